//! Azure locations: ARM stores a location by its name (`westeurope`) whatever form a client sent
//! (`West Europe`), and lists the ones it knows at `/subscriptions/{s}/locations`.

/// The public cloud's regions as ARM names and shows them (name, display name, geography).
pub const REGIONS: &[(&str, &str, &str)] = &[
    ("eastus", "East US", "United States"),
    ("eastus2", "East US 2", "United States"),
    ("centralus", "Central US", "United States"),
    ("northcentralus", "North Central US", "United States"),
    ("southcentralus", "South Central US", "United States"),
    ("westcentralus", "West Central US", "United States"),
    ("westus", "West US", "United States"),
    ("westus2", "West US 2", "United States"),
    ("westus3", "West US 3", "United States"),
    ("canadacentral", "Canada Central", "Canada"),
    ("brazilsouth", "Brazil South", "Brazil"),
    ("northeurope", "North Europe", "Europe"),
    ("westeurope", "West Europe", "Europe"),
    ("uksouth", "UK South", "United Kingdom"),
    ("ukwest", "UK West", "United Kingdom"),
    ("francecentral", "France Central", "France"),
    ("germanywestcentral", "Germany West Central", "Germany"),
    ("swedencentral", "Sweden Central", "Sweden"),
    ("switzerlandnorth", "Switzerland North", "Switzerland"),
    ("norwayeast", "Norway East", "Norway"),
    ("polandcentral", "Poland Central", "Poland"),
    ("italynorth", "Italy North", "Italy"),
    ("uaenorth", "UAE North", "United Arab Emirates"),
    ("southafricanorth", "South Africa North", "South Africa"),
    ("centralindia", "Central India", "India"),
    ("eastasia", "East Asia", "Asia Pacific"),
    ("southeastasia", "Southeast Asia", "Asia Pacific"),
    ("japaneast", "Japan East", "Japan"),
    ("koreacentral", "Korea Central", "Korea"),
    ("australiaeast", "Australia East", "Australia"),
];

/// The name ARM stores for a location as a client wrote it: lower case, without spaces
/// (`West Europe`, `westEurope` and `westeurope` are one location).
pub fn normalize(location: &str) -> String {
    location.chars().filter(|c| !c.is_whitespace()).flat_map(char::to_lowercase).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_and_names_are_one_location() {
        assert_eq!(normalize("West Europe"), "westeurope");
        assert_eq!(normalize(" westEurope "), "westeurope");
        assert_eq!(normalize("eastus2"), "eastus2");
        for (name, display, _) in REGIONS {
            assert_eq!(normalize(display), *name, "{display}");
        }
    }
}
