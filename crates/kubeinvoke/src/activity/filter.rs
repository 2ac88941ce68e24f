//! The `$filter` of the activity log API, as `az monitor activity-log list` writes it:
//! `eventTimestamp ge X and eventTimestamp le Y [and resourceGroupName eq 'g'] [and resourceId eq
//! '…'] [and correlationId eq '…'] [and resourceProvider eq '…'] [and caller eq '…'] [and status
//! eq '…']`. Timestamps may be quoted or not, with or without an offset (UTC then).

/// What to list; every condition must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventFilter {
    /// Unix milliseconds, inclusive.
    pub since: Option<i64>,
    pub until: Option<i64>,
    /// Lower-cased.
    pub group: Option<String>,
    /// Events of this resource or below it (lower-cased ARM id).
    pub resource: Option<String>,
    pub correlation_id: Option<String>,
    /// Lower-cased provider namespace (`microsoft.containerservice`).
    pub provider: Option<String>,
    pub caller: Option<String>,
    pub status: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadFilter(pub String);

impl EventFilter {
    pub fn parse(text: &str) -> Result<Self, BadFilter> {
        let mut filter = EventFilter::default();
        for condition in split_and(text) {
            let condition = condition.trim();
            let mut words = condition.splitn(3, ' ');
            let (Some(field), Some(op), Some(value)) = (words.next(), words.next(), words.next()) else {
                return Err(BadFilter(format!("'{condition}' is not 'field op value'")));
            };
            let value = value.trim().trim_matches('\'').to_string();
            match (field.to_ascii_lowercase().as_str(), op.to_ascii_lowercase().as_str()) {
                ("eventtimestamp", "ge") => filter.since = Some(timestamp(&value)?),
                ("eventtimestamp", "le") => filter.until = Some(timestamp(&value)?),
                ("resourcegroupname", "eq") => filter.group = Some(value.to_lowercase()),
                ("resourceid" | "resourceuri", "eq") => {
                    filter.resource = Some(value.trim_end_matches('/').to_lowercase())
                }
                ("correlationid", "eq") => filter.correlation_id = Some(value),
                ("resourceprovider", "eq") => filter.provider = Some(value.to_lowercase()),
                ("caller", "eq") => filter.caller = Some(value),
                ("status", "eq") => filter.status = Some(value),
                _ => {
                    return Err(BadFilter(format!(
                        "'{condition}' is not supported: use eventTimestamp ge/le, resourceGroupName, resourceId, \
                         resourceUri, correlationId, resourceProvider, caller or status eq"
                    )));
                }
            }
        }
        if filter.since.is_none() {
            return Err(BadFilter("The filter must give a start: eventTimestamp ge <time>.".into()));
        }
        Ok(filter)
    }
}

/// Splits on ` and ` outside quotes.
fn split_and(text: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\'' {
            quoted = !quoted;
        }
        let rest: String = chars[i..chars.len().min(i + 5)].iter().collect();
        if !quoted && rest.eq_ignore_ascii_case(" and ") {
            parts.push(std::mem::take(&mut current));
            i += 5;
            continue;
        }
        current.push(c);
        i += 1;
    }
    parts.push(current);
    parts.into_iter().filter(|p| !p.trim().is_empty()).collect()
}

fn timestamp(text: &str) -> Result<i64, BadFilter> {
    let has_offset = text.ends_with('Z')
        || text.ends_with('z')
        || text.rfind(['+', '-']).is_some_and(|at| text.find('T').is_some_and(|t| at > t));
    let full = if has_offset { text.to_string() } else { format!("{text}Z") };
    let parsed = time::OffsetDateTime::parse(&full, &time::format_description::well_known::Rfc3339)
        .map_err(|_| BadFilter(format!("'{text}' is not a date and time (ISO 8601)")))?;
    Ok((parsed.unix_timestamp_nanos() / 1_000_000) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_az_sends_is_read() {
        let f = EventFilter::parse(
            "eventTimestamp ge 2026-11-30T07:45:00.123456 and eventTimestamp le 2026-11-30T13:45:00+00:00 and resourceGroupName eq 'RG' and caller eq 'app'",
        )
        .unwrap();
        assert_eq!(f.group.as_deref(), Some("rg"));
        assert_eq!(f.caller.as_deref(), Some("app"));
        assert_eq!(f.until.unwrap() - f.since.unwrap(), 6 * 3_600_000 - 123);
        let f = EventFilter::parse(
            "eventTimestamp ge '2026-11-30T00:00:00Z' and resourceUri eq '/subscriptions/S/x and y'",
        )
        .unwrap();
        assert_eq!(f.resource.as_deref(), Some("/subscriptions/s/x and y"));
    }

    #[test]
    fn other_filters_are_refused_in_words() {
        assert!(EventFilter::parse("resourceGroupName eq 'rg'").unwrap_err().0.contains("must give a start"));
        assert!(EventFilter::parse("eventTimestamp ge 2026-01-01T00:00:00Z and level eq 'x'").is_err());
        assert!(EventFilter::parse("eventTimestamp ge yesterday").is_err());
    }
}
