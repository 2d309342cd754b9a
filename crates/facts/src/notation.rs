//! Keys in the notations DJs use: Camelot (`8A`), Open Key (`1m`) and text (`A minor`), and which keys
//! mix (the Camelot wheel).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Pitch-class names, C = 0 (flats where DJ software writes them).
pub const PITCH_NAMES: [&str; 12] = ["C", "Db", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B"];
/// Names of minor tonics (sharps where DJ software writes them).
const MINOR_NAMES: [&str; 12] = ["C", "C#", "D", "Eb", "E", "F", "F#", "G", "G#", "A", "Bb", "B"];

/// Major or minor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mode {
    /// Major (Camelot B, Open Key d).
    Major,
    /// Minor (Camelot A, Open Key m).
    Minor,
}

/// Which keys count as compatible around a key on the Camelot wheel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum KeyRule {
    /// The same key, one step either way (a fifth up or down) and the relative major/minor.
    #[default]
    Strict,
    /// Strict plus the diagonals (one step and the other mode), as Mixxx's `~key` does.
    Wide,
}

impl FromStr for KeyRule {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "strict" => Ok(KeyRule::Strict),
            "wide" => Ok(KeyRule::Wide),
            _ => Err(format!("{s:?}: a key rule is strict or wide")),
        }
    }
}

/// One of the 24 keys, by its place on the Camelot wheel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CamelotKey {
    number: u8,
    mode: Mode,
}

impl CamelotKey {
    /// The key with tonic pitch class `tonic` (C = 0) and `mode`.
    pub fn from_tonic(tonic: usize, mode: Mode) -> CamelotKey {
        let major_tonic = match mode {
            Mode::Major => tonic % 12,
            Mode::Minor => (tonic + 3) % 12,
        };
        CamelotKey { number: (((7 * major_tonic) % 12 + 7) % 12 + 1) as u8, mode }
    }

    /// Camelot number, 1 to 12.
    pub fn number(self) -> u8 {
        self.number
    }

    /// Major or minor.
    pub fn mode(self) -> Mode {
        self.mode
    }

    /// Tonic pitch class, C = 0.
    pub fn tonic(self) -> usize {
        let major = (7 * (self.number as usize + 12 - 8)) % 12;
        match self.mode {
            Mode::Major => major,
            Mode::Minor => (major + 9) % 12,
        }
    }

    /// `A minor`, `Db major`.
    pub fn name(self) -> String {
        match self.mode {
            Mode::Major => format!("{} major", PITCH_NAMES[self.tonic()]),
            Mode::Minor => format!("{} minor", MINOR_NAMES[self.tonic()]),
        }
    }

    /// Open Key notation: `1d` is C major, `1m` A minor.
    pub fn open_key(self) -> String {
        let n = (self.number as usize + 4) % 12 + 1;
        format!("{n}{}", if self.mode == Mode::Major { "d" } else { "m" })
    }

    fn step(self, by: i32) -> CamelotKey {
        CamelotKey { number: ((self.number as i32 - 1 + by).rem_euclid(12) + 1) as u8, mode: self.mode }
    }

    fn other_mode(self) -> CamelotKey {
        CamelotKey { number: self.number, mode: if self.mode == Mode::Major { Mode::Minor } else { Mode::Major } }
    }

    /// The keys that mix with this one under `rule`, this one first.
    pub fn neighbours(self, rule: KeyRule) -> Vec<CamelotKey> {
        let mut v = vec![self, self.step(-1), self.step(1), self.other_mode()];
        if rule == KeyRule::Wide {
            v.extend([self.other_mode().step(-1), self.other_mode().step(1)]);
        }
        v
    }

    /// Whether `other` mixes with this key under `rule`.
    pub fn mixes_with(self, other: CamelotKey, rule: KeyRule) -> bool {
        self.neighbours(rule).contains(&other)
    }
}

impl fmt::Display for CamelotKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.number, if self.mode == Mode::Major { "B" } else { "A" })
    }
}

impl FromStr for CamelotKey {
    type Err = String;

    /// `8A` (Camelot), `1m` (Open Key), `A minor`, `Am`, `F#m`, `Db`, `Bb major`.
    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        let bad = || format!("{s:?}: write a key as Camelot (8A), Open Key (1m) or text (A minor, F#m, Db)");
        let digits: String = t.chars().take_while(char::is_ascii_digit).collect();
        if !digits.is_empty() {
            let n: usize = digits.parse().map_err(|_| bad())?;
            if !(1..=12).contains(&n) {
                return Err(bad());
            }
            let rest = t[digits.len()..].trim().to_ascii_lowercase();
            return match rest.as_str() {
                "a" => Ok(CamelotKey { number: n as u8, mode: Mode::Minor }),
                "b" => Ok(CamelotKey { number: n as u8, mode: Mode::Major }),
                // Open Key n is Camelot n + 7.
                "m" => Ok(CamelotKey { number: ((n + 6) % 12 + 1) as u8, mode: Mode::Minor }),
                "d" => Ok(CamelotKey { number: ((n + 6) % 12 + 1) as u8, mode: Mode::Major }),
                _ => Err(bad()),
            };
        }
        let mut chars = t.chars();
        let letter = chars.next().ok_or_else(bad)?.to_ascii_uppercase();
        let base = match letter {
            'C' => 0,
            'D' => 2,
            'E' => 4,
            'F' => 5,
            'G' => 7,
            'A' => 9,
            'B' => 11,
            _ => return Err(bad()),
        };
        let mut rest: String = chars.collect();
        let mut tonic: i32 = base;
        if let Some(r) = rest.strip_prefix('#').or_else(|| rest.strip_prefix('♯')) {
            tonic += 1;
            rest = r.to_string();
        } else if let Some(r) = rest.strip_prefix('b').or_else(|| rest.strip_prefix('♭')) {
            tonic -= 1;
            rest = r.to_string();
        }
        let mode = match rest.trim().to_ascii_lowercase().as_str() {
            "" | "maj" | "major" | "dur" => Mode::Major,
            "m" | "min" | "minor" | "moll" => Mode::Minor,
            _ => return Err(bad()),
        };
        Ok(CamelotKey::from_tonic(tonic.rem_euclid(12) as usize, mode))
    }
}

impl Serialize for CamelotKey {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for CamelotKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wheel_matches_the_published_chart() {
        // Camelot's chart: C major 8B, A minor 8A, G major 9B, E minor 9A, F# major 2B, Eb minor 2A, F major 7B.
        for (text, camelot, open) in [
            ("C", "8B", "1d"),
            ("A minor", "8A", "1m"),
            ("G major", "9B", "2d"),
            ("Em", "9A", "2m"),
            ("F#", "2B", "7d"),
            ("Ebm", "2A", "7m"),
            ("F", "7B", "12d"),
            ("Bbm", "3A", "8m"),
            ("B", "1B", "6d"),
        ] {
            let k: CamelotKey = text.parse().unwrap();
            assert_eq!((k.to_string(), k.open_key()), (camelot.to_string(), open.to_string()), "{text}");
            assert_eq!(camelot.parse::<CamelotKey>().unwrap(), k);
            assert_eq!(open.parse::<CamelotKey>().unwrap(), k, "{open}");
            assert_eq!(k.name().parse::<CamelotKey>().unwrap(), k, "{}", k.name());
        }
        for n in 1..=12u8 {
            for mode in [Mode::Major, Mode::Minor] {
                let k = CamelotKey { number: n, mode };
                assert_eq!(CamelotKey::from_tonic(k.tonic(), mode), k);
            }
        }
        assert!("13A".parse::<CamelotKey>().is_err() && "H".parse::<CamelotKey>().is_err() && "8C".parse::<CamelotKey>().is_err());
    }

    #[test]
    fn neighbourhoods_strict_and_wide() {
        let k: CamelotKey = "1A".parse().unwrap();
        let names = |r| k.neighbours(r).iter().map(|k| k.to_string()).collect::<Vec<_>>();
        assert_eq!(names(KeyRule::Strict), ["1A", "12A", "2A", "1B"]);
        assert_eq!(names(KeyRule::Wide), ["1A", "12A", "2A", "1B", "12B", "2B"]);
        assert!(!k.mixes_with("3A".parse().unwrap(), KeyRule::Wide));
    }
}
