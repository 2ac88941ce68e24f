//! Four eyes: a cluster's approval policy (`properties.commandApproval`, an extension in the style
//! of AKS's `apiServerAccessProfile`) and the rules a decision on a held command follows.
//!
//! A held command is stored `PendingApproval`; it joins the queue only once `approvers` distinct
//! principals other than its requester said yes, ends `Canceled` when one says no, and `Failed`
//! (`ApprovalExpired`) when no decision came within `expiresAfter`.

use std::time::Duration;

use serde_json::Value;

/// The property under a cluster's `properties`.
pub(crate) const PROPERTY: &str = "commandApproval";
/// How many approvers a policy may ask for.
pub(crate) const MAX_APPROVERS: u8 = 3;
/// The longest a command may wait for its approvers.
pub(crate) const MAX_EXPIRY: Duration = Duration::from_secs(7 * 24 * 3600);
/// How long a command waits when the policy does not say.
pub(crate) const DEFAULT_EXPIRY: Duration = Duration::from_secs(3600);
/// The longest reason an approver may give.
pub(crate) const MAX_REASON_BYTES: usize = 1024;

/// Which commands a cluster holds for approval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApprovalMode {
    /// Every command, saved ones too.
    Always,
    /// Free-form command lines (and fan-out targets); saved commands were vetted already.
    FreeFormOnly,
}

/// `properties.commandApproval` of a cluster that holds commands (`mode: "off"` is no policy).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApprovalPolicy {
    pub mode: ApprovalMode,
    /// Distinct principals, none of them the requester, who must approve.
    pub approvers: u8,
    pub expires_after: Duration,
}

impl ApprovalPolicy {
    /// Reads the property's value: `None` for `mode: "off"`; an error naming what is wrong.
    pub(crate) fn parse(value: &Value) -> Result<Option<Self>, String> {
        let Some(fields) = value.as_object() else {
            return Err(format!(
                "must be an object like {{\"mode\": \"freeFormOnly\", \"approvers\": 1, \"expiresAfter\": \"PT1H\"}}, not {value}"
            ));
        };
        if let Some(unknown) = fields.keys().find(|k| !["mode", "approvers", "expiresAfter"].contains(&k.as_str())) {
            return Err(format!("has an unknown property '{unknown}' (known: mode, approvers, expiresAfter)"));
        }
        let mode = match fields.get("mode").and_then(Value::as_str) {
            Some(m) if m.eq_ignore_ascii_case("always") => ApprovalMode::Always,
            Some(m) if m.eq_ignore_ascii_case("freeFormOnly") => ApprovalMode::FreeFormOnly,
            Some(m) if m.eq_ignore_ascii_case("off") => return Ok(None),
            _ => return Err("'mode' must be \"always\", \"freeFormOnly\" or \"off\"".into()),
        };
        let approvers = match fields.get("approvers") {
            None | Some(Value::Null) => 1,
            Some(n) => n
                .as_u64()
                .filter(|n| (1..=u64::from(MAX_APPROVERS)).contains(n))
                .ok_or_else(|| format!("'approvers' must be a whole number from 1 to {MAX_APPROVERS}, not {n}"))?
                as u8,
        };
        let expires_after = match fields.get("expiresAfter") {
            None | Some(Value::Null) => DEFAULT_EXPIRY,
            Some(text) => text
                .as_str()
                .and_then(parse_iso_duration)
                .filter(|d| !d.is_zero() && *d <= MAX_EXPIRY)
                .ok_or_else(|| {
                    format!("'expiresAfter' must be an ISO 8601 duration from PT1S to P7D (like \"PT1H\"), not {text}")
                })?,
        };
        Ok(Some(ApprovalPolicy { mode, approvers, expires_after }))
    }

    /// Whether a command is held: `unvetted` when nobody but its asker vetted it (a shell line of
    /// the caller's, or a saved command the caller wrote last).
    pub(crate) fn holds(&self, unvetted: bool) -> bool {
        match self.mode {
            ApprovalMode::Always => true,
            ApprovalMode::FreeFormOnly => unvetted,
        }
    }

    /// The hold a command asked for at `now` by `requester` (an object id) gets.
    pub(crate) fn hold(&self, requester: &str, now: i64) -> Hold {
        let wait = i64::try_from(self.expires_after.as_millis()).unwrap_or(i64::MAX);
        Hold { needed: self.approvers, deadline: now.saturating_add(wait), requester: requester.to_string() }
    }
}

/// The one policy a fan-out run to clusters holding it by `policies` waits under: the most
/// approvers any of them asks for, within the shortest time any allows.
pub(crate) fn strictest(policies: impl IntoIterator<Item = ApprovalPolicy>) -> Option<ApprovalPolicy> {
    policies.into_iter().reduce(|a, b| ApprovalPolicy {
        mode: ApprovalMode::FreeFormOnly,
        approvers: a.approvers.max(b.approvers),
        expires_after: a.expires_after.min(b.expires_after),
    })
}

/// What a held command waits for, as stored with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hold {
    /// Approvals needed from distinct principals.
    pub needed: u8,
    /// When it ends `ApprovalExpired` (Unix ms).
    pub deadline: i64,
    /// The requester's object id: the one principal who may never approve it.
    pub requester: String,
}

/// An approver's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Approve,
    Reject,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Approve => "Approved",
            Verdict::Reject => "Rejected",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [Verdict::Approve, Verdict::Reject].into_iter().find(|v| v.as_str() == text)
    }
}

/// One principal's decision on a held command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub verdict: Verdict,
    /// The approver's object id (what makes two approvals distinct).
    pub approver_oid: String,
    /// `appId (objectId)`, as commands name their requester.
    pub approver: String,
    pub reason: String,
    pub at: i64,
}

/// An ISO 8601 duration of days, hours, minutes and seconds (`P1D`, `PT1H30M`, `PT90S`); years,
/// months and weeks have no fixed length and are not taken.
pub(crate) fn parse_iso_duration(text: &str) -> Option<Duration> {
    let rest = text.strip_prefix(['P', 'p'])?;
    let (days, time) = match rest.split_once(['T', 't']) {
        Some((days, time)) => (days, Some(time)),
        None => (rest, None),
    };
    let mut seconds: u64 = 0;
    let mut any = false;
    let mut add = |part: &str, units: &[(char, u64)]| -> Option<()> {
        let mut number = String::new();
        let mut allowed = units.iter();
        for c in part.chars() {
            if c.is_ascii_digit() {
                number.push(c);
                continue;
            }
            let unit = c.to_ascii_uppercase();
            let (_, scale) = allowed.by_ref().find(|(u, _)| *u == unit)?;
            let n: u64 = number.parse().ok()?;
            seconds = seconds.checked_add(n.checked_mul(*scale)?)?;
            number.clear();
            any = true;
        }
        number.is_empty().then_some(())
    };
    add(days, &[('D', 86_400)])?;
    if let Some(time) = time {
        if time.is_empty() {
            return None;
        }
        add(time, &[('H', 3600), ('M', 60), ('S', 1)])?;
    }
    any.then_some(Duration::from_secs(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn durations_of_days_hours_minutes_and_seconds_are_read() {
        assert_eq!(parse_iso_duration("PT1H"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_iso_duration("P1DT2H3M4S"), Some(Duration::from_secs(86_400 + 7200 + 184)));
        assert_eq!(parse_iso_duration("pt90s"), Some(Duration::from_secs(90)));
        for bad in
            ["", "P", "PT", "1H", "PT1", "PT1Y", "P1M", "PTH", "PT1S1H", "P1W", "PT-1S", "PT99999999999999999999S"]
        {
            assert_eq!(parse_iso_duration(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_policy_is_read_with_its_defaults_and_refused_naming_the_field() {
        let policy = ApprovalPolicy::parse(&json!({"mode": "freeFormOnly"})).unwrap().unwrap();
        assert_eq!((policy.approvers, policy.expires_after), (1, DEFAULT_EXPIRY));
        assert!(policy.holds(true) && !policy.holds(false));
        let always = ApprovalPolicy::parse(&json!({"mode": "always", "approvers": 3, "expiresAfter": "PT5M"}));
        let always = always.unwrap().unwrap();
        assert!(always.holds(false) && always.expires_after == Duration::from_secs(300));
        assert_eq!(ApprovalPolicy::parse(&json!({"mode": "off", "approvers": 2})).unwrap(), None);
        for (bad, names) in [
            (json!("always"), "object"),
            (json!({"mode": "sometimes"}), "'mode'"),
            (json!({"mode": "always", "approvers": 0}), "'approvers'"),
            (json!({"mode": "always", "approvers": 4}), "'approvers'"),
            (json!({"mode": "always", "expiresAfter": "P30D"}), "'expiresAfter'"),
            (json!({"mode": "always", "expiresAfter": "PT0S"}), "'expiresAfter'"),
            (json!({"mode": "always", "approver": 2}), "'approver'"),
        ] {
            let why = ApprovalPolicy::parse(&bad).unwrap_err();
            assert!(why.contains(names), "{bad}: {why}");
        }
    }

    #[test]
    fn a_run_waits_under_the_strictest_of_its_clusters_policies() {
        let policy = |approvers, expires| ApprovalPolicy {
            mode: ApprovalMode::Always,
            approvers,
            expires_after: Duration::from_secs(expires),
        };
        let run = strictest([policy(1, 60), policy(3, 3600), policy(2, 30)]).unwrap();
        assert_eq!((run.approvers, run.expires_after), (3, Duration::from_secs(30)));
        assert_eq!(strictest([]), None);
    }

    #[test]
    fn a_hold_names_its_requester_and_deadline() {
        let policy = ApprovalPolicy::parse(&json!({"mode": "always", "approvers": 2, "expiresAfter": "PT1M"}));
        let hold = policy.unwrap().unwrap().hold("oid-1", 1_000);
        assert_eq!(hold, Hold { needed: 2, deadline: 61_000, requester: "oid-1".into() });
    }
}
