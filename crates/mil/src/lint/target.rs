//! The chip families a program is linted for, and a finding's severity on each of them.

use crate::error::Severity;

/// A chip family (ANE generation) to lint for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Target {
    /// M1 and M2 (ANE families A13/A14, H13/H14).
    M1M2,
    /// M3 (A15, H15).
    M3,
    /// M4, M5 and later (A16+, H16/H17).
    M4Plus,
    /// The worst case over every family: what the default plan must pass.
    Strictest,
}

impl Target {
    pub const ALL: [Target; 4] = [Target::M1M2, Target::M3, Target::M4Plus, Target::Strictest];

    pub fn name(self) -> &'static str {
        match self {
            Target::M1M2 => "m1-m2",
            Target::M3 => "m3",
            Target::M4Plus => "m4+",
            Target::Strictest => "strictest",
        }
    }

    pub fn from_name(s: &str) -> Option<Target> {
        Target::ALL.into_iter().find(|t| t.name() == s)
    }

    /// Largest extent of any axis (ANEForge: 16384 on A13–A15, 65536 on A16).
    pub(super) fn max_extent(self) -> usize {
        match self {
            Target::M4Plus => 65536,
            _ => 16384,
        }
    }

    /// Largest conv kernel width (ANEForge: ≤ 13 on M1, ≤ 15 on M5).
    pub(super) fn max_conv_kernel_width(self) -> usize {
        match self {
            Target::M4Plus | Target::M3 => 15,
            _ => 13,
        }
    }
}

/// Severity of a finding per family; `None` = not a problem there.
#[derive(Clone, Copy)]
pub(super) struct PerChip {
    pub(super) m12: Option<Severity>,
    pub(super) m3: Option<Severity>,
    pub(super) m4: Option<Severity>,
}

pub(super) const E: Option<Severity> = Some(Severity::Error);
pub(super) const W: Option<Severity> = Some(Severity::Warning);
pub(super) const N: Option<Severity> = None;

impl PerChip {
    pub(super) const fn all(s: Option<Severity>) -> PerChip {
        PerChip { m12: s, m3: s, m4: s }
    }

    pub(super) fn for_target(self, t: Target) -> Option<Severity> {
        match t {
            Target::M1M2 => self.m12,
            Target::M3 => self.m3,
            Target::M4Plus => self.m4,
            Target::Strictest => self.m12.max(self.m3).max(self.m4),
        }
    }

    /// A limit that differs per family: past `loosest` (what the most permissive family allows)
    /// an error everywhere, otherwise `within` (the families whose own limit is lower).
    pub(super) fn past_limit(value: usize, loosest: usize, within: PerChip) -> PerChip {
        if value > loosest { PerChip::all(E) } else { within }
    }
}
