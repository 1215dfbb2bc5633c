//! What the machine says about its Neural Engine. Only a guess of the chip family is derived;
//! capability probing (which ops and shapes compile) belongs to the caller's probe programs.

/// Apple silicon generation, guessed from the ANE sub-type (M(n) = H(n+12), docs/ane-runtime.md §10).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ChipFamily {
    /// H13 (ANE family A13).
    M1,
    /// H14 (A14).
    M2,
    /// H15 (A15).
    M3,
    /// H16 (A16).
    M4,
    /// H17 (A16 ops, more cores).
    M5,
    /// A sub-type this table does not know.
    Unknown,
}

impl ChipFamily {
    /// Parses sub-types like `"H16G"`, `"h15g"`, `"H17s"` by their `h<digits>` prefix
    /// (case-insensitive).
    pub fn from_subtype(subtype: &str) -> ChipFamily {
        let s = subtype.trim().to_ascii_lowercase();
        let Some(rest) = s.strip_prefix('h') else {
            return ChipFamily::Unknown;
        };
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        match digits.as_str() {
            "13" => ChipFamily::M1,
            "14" => ChipFamily::M2,
            "15" => ChipFamily::M3,
            "16" => ChipFamily::M4,
            "17" => ChipFamily::M5,
            _ => ChipFamily::Unknown,
        }
    }
}

impl std::fmt::Display for ChipFamily {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ChipFamily::M1 => "M1",
            ChipFamily::M2 => "M2",
            ChipFamily::M3 => "M3",
            ChipFamily::M4 => "M4",
            ChipFamily::M5 => "M5",
            ChipFamily::Unknown => "unknown",
        })
    }
}

/// The Neural Engine of this machine, as far as `_ANEDeviceInfo` tells.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceInfo {
    /// `+[_ANEDeviceInfo aneSubType]`'s description (e.g. `"H16G"` on M4); `None` when the class
    /// or selector is missing.
    pub subtype: Option<String>,
    /// Guess from `subtype`.
    pub chip_family: ChipFamily,
}

impl DeviceInfo {
    /// Builds the info from an optional sub-type string.
    pub fn from_subtype(subtype: Option<String>) -> DeviceInfo {
        let chip_family = subtype
            .as_deref()
            .map_or(ChipFamily::Unknown, ChipFamily::from_subtype);
        DeviceInfo { subtype, chip_family }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subtypes_map_to_families() {
        for (s, f) in [
            ("H13", ChipFamily::M1),
            ("h14g", ChipFamily::M2),
            ("h15g", ChipFamily::M3),
            ("H16G", ChipFamily::M4),
            ("H17s", ChipFamily::M5),
            (" h16 ", ChipFamily::M4),
            ("H1", ChipFamily::Unknown),
            ("H130", ChipFamily::Unknown),
            ("M4", ChipFamily::Unknown),
            ("", ChipFamily::Unknown),
        ] {
            assert_eq!(ChipFamily::from_subtype(s), f, "{s:?}");
        }
    }

    #[test]
    fn device_info_without_subtype_is_unknown() {
        let d = DeviceInfo::from_subtype(None);
        assert_eq!(d.chip_family, ChipFamily::Unknown);
        assert_eq!(
            DeviceInfo::from_subtype(Some("H16G".into())).chip_family,
            ChipFamily::M4
        );
        assert_eq!(ChipFamily::M5.to_string(), "M5");
    }
}
