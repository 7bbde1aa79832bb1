//! How a station file names a GPIO line.

use std::fmt;
use std::str::FromStr;

/// Which GPIO line: `chip:offset` (chip by path `/dev/gpiochip0`, name `gpiochip0` or
/// label `tegra234-gpio`) or a line name as the board's device tree gives it (`PQ.05`,
/// `GPIO17`). Jetson modules number header pins differently from the chips' offsets, so
/// names are often the safer choice there.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum LineSpec {
    ChipOffset { chip: String, offset: u32 },
    Name(String),
}

impl FromStr for LineSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s.is_empty() {
            return Err("empty GPIO line".into());
        }
        match s.rsplit_once(':') {
            Some((chip, offset)) => {
                let offset = offset.trim().parse::<u32>().map_err(|_| {
                    format!("`{s}`: the part after `:` must be a line offset (a number)")
                })?;
                if chip.trim().is_empty() {
                    return Err(format!("`{s}`: missing chip before `:`"));
                }
                Ok(LineSpec::ChipOffset {
                    chip: chip.trim().to_string(),
                    offset,
                })
            }
            None => Ok(LineSpec::Name(s.to_string())),
        }
    }
}

impl fmt::Display for LineSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LineSpec::ChipOffset { chip, offset } => write!(f, "{chip}:{offset}"),
            LineSpec::Name(n) => f.write_str(n),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_specs_parse_chip_offset_and_names() {
        assert_eq!(
            "gpiochip0:17".parse::<LineSpec>().unwrap(),
            LineSpec::ChipOffset { chip: "gpiochip0".into(), offset: 17 }
        );
        assert_eq!(
            "/dev/gpiochip2:5".parse::<LineSpec>().unwrap(),
            LineSpec::ChipOffset { chip: "/dev/gpiochip2".into(), offset: 5 }
        );
        assert_eq!("PQ.05".parse::<LineSpec>().unwrap(), LineSpec::Name("PQ.05".into()));
        assert!("gpiochip0:x".parse::<LineSpec>().is_err());
        assert!(":3".parse::<LineSpec>().is_err());
        assert!("".parse::<LineSpec>().is_err());
    }
}
