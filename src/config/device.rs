//! `train.device` as a typed value: `auto` (the first CUDA device, else the
//! CPU), `cpu`, `cuda` (= `cuda:0`) or `cuda:N`. A config file, `--set` or
//! `--device` that names anything else is refused where it is parsed, with
//! the spellings that work.

use super::hardware::Hardware;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// A device name: `auto`, `cpu`, `cuda` or `cuda:N`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceChoice {
    #[default]
    Auto,
    Cpu,
    Cuda(usize),
}

impl DeviceChoice {
    pub fn parse(s: &str) -> Option<DeviceChoice> {
        match s {
            "auto" => Some(DeviceChoice::Auto),
            "cpu" => Some(DeviceChoice::Cpu),
            "cuda" => Some(DeviceChoice::Cuda(0)),
            _ => s
                .strip_prefix("cuda:")?
                .parse()
                .ok()
                .map(DeviceChoice::Cuda),
        }
    }

    /// The device this choice means on this machine.
    pub fn resolve(self) -> tch::Device {
        self.resolve_on(&Hardware::probe())
    }

    /// The device this choice means on a machine with `hw`: `auto` is the
    /// first CUDA device when there is one (as `tch::Device::cuda_if_available`),
    /// else the CPU.
    pub fn resolve_on(self, hw: &Hardware) -> tch::Device {
        match self {
            DeviceChoice::Auto if hw.cuda_devices > 0 => tch::Device::Cuda(0),
            DeviceChoice::Auto => tch::Device::Cpu,
            DeviceChoice::Cpu => tch::Device::Cpu,
            DeviceChoice::Cuda(i) => tch::Device::Cuda(i),
        }
    }
}

impl fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceChoice::Auto => f.write_str("auto"),
            DeviceChoice::Cpu => f.write_str("cpu"),
            DeviceChoice::Cuda(i) => write!(f, "cuda:{i}"),
        }
    }
}

impl Serialize for DeviceChoice {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for DeviceChoice {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<DeviceChoice, D::Error> {
        let text = String::deserialize(d)?;
        DeviceChoice::parse(&text).ok_or_else(|| {
            serde::de::Error::custom(format!("= {text:?}: expected auto, cpu, cuda or cuda:N"))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_round_trip_and_other_names_are_refused_with_the_spellings() {
        for (text, d) in [
            ("auto", DeviceChoice::Auto),
            ("cpu", DeviceChoice::Cpu),
            ("cuda:2", DeviceChoice::Cuda(2)),
        ] {
            let v: DeviceChoice = serde_json::from_str(&format!("{text:?}")).unwrap();
            assert_eq!(v, d);
            assert_eq!(v.to_string(), text);
        }
        assert_eq!(DeviceChoice::parse("cuda"), Some(DeviceChoice::Cuda(0)));
        for bad in ["gpu", "cuda:", "cuda:x", "CPU", ""] {
            let e = serde_json::from_str::<DeviceChoice>(&format!("{bad:?}"))
                .unwrap_err()
                .to_string();
            assert!(
                e.contains(&format!("= {bad:?}: expected auto, cpu, cuda or cuda:N")),
                "{e}"
            );
        }
        let none = Hardware {
            cuda_devices: 0,
            cuda_graphs: false,
        };
        assert_eq!(DeviceChoice::Auto.resolve_on(&none), tch::Device::Cpu);
    }
}
