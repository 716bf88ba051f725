//! Our UNet's parameter names against those of diffusers' `UNet2DModel`.
//!
//! The two networks are the same layers in the same order (see
//! [`super::unet`]); only the names differ. This file is the one place that
//! knows both spellings, so export (ours → diffusers) and import (a
//! diffusers folder → ours) cannot drift apart:
//!
//! | ddpm-lab | diffusers |
//! |---|---|
//! | `embedding.time_linear_{1,2}` | `time_embedding.linear_{1,2}` |
//! | `embedding.label_embedding` | `class_embedding` |
//! | `down.L.res.i`, `down.L.attn.i` | `down_blocks.L.resnets.i`, `down_blocks.L.attentions.i` |
//! | `down.L.downsample` | `down_blocks.L.downsamplers.0.conv` |
//! | `mid.res1`, `mid.attn`, `mid.res2` | `mid_block.resnets.0`, `mid_block.attentions.0`, `mid_block.resnets.1` |
//! | `up.L.…` (numbered by level) | `up_blocks.(levels − 1 − L).…` (numbered in the order they run) |
//! | `up.L.upsample` | `up_blocks.….upsamplers.0.conv` |
//! | `…attn….to_out` | `…attentions….to_out.0` (diffusers' `to_out` is [Linear, Dropout]) |
//! | `norm_out` | `conv_norm_out` |
//!
//! `conv_in`, `conv_out` and every name inside a residual block (`norm1`,
//! `conv1`, `time_emb_proj`, `norm2`, `conv2`, `conv_shortcut`) and an
//! attention block (`group_norm`, `to_q`, `to_k`, `to_v`) are the same in
//! both. The continuous-condition embedding (`embedding.cond_proj`,
//! `embedding.cond_null`) has no counterpart.

use std::cmp::Ordering;

/// The diffusers name of our parameter `name` in a UNet of `levels`
/// resolution levels; None for a parameter diffusers' `UNet2DModel` does not
/// have (the condition-vector embedding) or a name that is not our UNet's.
pub fn to_diffusers(name: &str, levels: usize) -> Option<String> {
    let parts: Vec<&str> = name.split('.').collect();
    let (head, rest): (String, &[&str]) = match parts.as_slice() {
        ["embedding", "time_linear_1", rest @ ..] => ("time_embedding.linear_1".into(), rest),
        ["embedding", "time_linear_2", rest @ ..] => ("time_embedding.linear_2".into(), rest),
        ["embedding", "label_embedding", rest @ ..] => ("class_embedding".into(), rest),
        ["conv_in", rest @ ..] => ("conv_in".into(), rest),
        ["norm_out", rest @ ..] => ("conv_norm_out".into(), rest),
        ["conv_out", rest @ ..] => ("conv_out".into(), rest),
        ["mid", "res1", rest @ ..] => ("mid_block.resnets.0".into(), rest),
        ["mid", "res2", rest @ ..] => ("mid_block.resnets.1".into(), rest),
        ["mid", "attn", rest @ ..] => return Some(attention("mid_block.attentions.0", rest)),
        [path @ ("down" | "up"), level, kind, rest @ ..] => {
            let level: usize = level.parse().ok().filter(|&l| l < levels)?;
            let block = if *path == "down" {
                format!("down_blocks.{level}")
            } else {
                format!("up_blocks.{}", levels - 1 - level)
            };
            return block_part(&block, kind, rest);
        }
        _ => return None,
    };
    (!rest.is_empty()).then(|| format!("{head}.{}", rest.join(".")))
}

/// A name inside one down or up block: a residual block, an attention block
/// or the resampling conv.
fn block_part(block: &str, kind: &str, rest: &[&str]) -> Option<String> {
    match (kind, rest) {
        ("res", [i, tail @ ..]) if !tail.is_empty() => {
            Some(format!("{block}.resnets.{i}.{}", tail.join(".")))
        }
        ("attn", [i, tail @ ..]) if !tail.is_empty() => {
            Some(attention(&format!("{block}.attentions.{i}"), tail))
        }
        ("downsample", tail) if !tail.is_empty() => {
            Some(format!("{block}.downsamplers.0.conv.{}", tail.join(".")))
        }
        ("upsample", tail) if !tail.is_empty() => {
            Some(format!("{block}.upsamplers.0.conv.{}", tail.join(".")))
        }
        _ => None,
    }
}

/// A name inside an attention block: only the output projection moves.
fn attention(block: &str, tail: &[&str]) -> String {
    match tail {
        ["to_out", rest @ ..] => format!("{block}.to_out.0.{}", rest.join(".")),
        _ => format!("{block}.{}", tail.join(".")),
    }
}

/// The order diffusers' names are checked and reported in: the order data
/// flows through the network (input conv, embeddings, down blocks, middle,
/// up blocks, output), with block and layer numbers compared as numbers.
pub fn network_order(a: &str, b: &str) -> Ordering {
    fn rank(top: &str) -> u8 {
        match top {
            "conv_in" => 0,
            "time_embedding" => 1,
            "class_embedding" => 2,
            "down_blocks" => 3,
            "mid_block" => 4,
            "up_blocks" => 5,
            "conv_norm_out" => 6,
            "conv_out" => 7,
            _ => 8,
        }
    }
    let key = |s: &str| {
        let mut parts = s.split('.');
        let top = parts.next().unwrap_or("");
        let rest: Vec<(u64, String)> = parts
            .map(|p| match p.parse::<u64>() {
                Ok(n) => (n, String::new()),
                // A layer's weight before its bias, as PyTorch lists them.
                Err(_) if p == "weight" => (u64::MAX, String::new()),
                Err(_) => (u64::MAX, p.to_string()),
            })
            .collect();
        (rank(top), top.to_string(), rest)
    };
    key(a).cmp(&key(b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ModelPreset, UNet, UNetConfig};
    use tch::{nn, Device};

    #[test]
    fn every_name_of_each_part_maps_as_the_table_says() {
        let cases = [
            ("conv_in.weight", "conv_in.weight"),
            (
                "embedding.time_linear_1.bias",
                "time_embedding.linear_1.bias",
            ),
            (
                "embedding.time_linear_2.weight",
                "time_embedding.linear_2.weight",
            ),
            ("embedding.label_embedding.weight", "class_embedding.weight"),
            (
                "down.0.res.1.conv_shortcut.weight",
                "down_blocks.0.resnets.1.conv_shortcut.weight",
            ),
            (
                "down.1.attn.0.to_out.weight",
                "down_blocks.1.attentions.0.to_out.0.weight",
            ),
            (
                "down.1.attn.0.group_norm.bias",
                "down_blocks.1.attentions.0.group_norm.bias",
            ),
            (
                "down.0.downsample.weight",
                "down_blocks.0.downsamplers.0.conv.weight",
            ),
            ("mid.res1.norm1.weight", "mid_block.resnets.0.norm1.weight"),
            ("mid.res2.conv2.bias", "mid_block.resnets.1.conv2.bias"),
            ("mid.attn.to_q.weight", "mid_block.attentions.0.to_q.weight"),
            (
                "mid.attn.to_out.bias",
                "mid_block.attentions.0.to_out.0.bias",
            ),
            // The up path runs from the deepest level: level 2 of 3 is up_blocks.0.
            (
                "up.2.res.0.conv1.weight",
                "up_blocks.0.resnets.0.conv1.weight",
            ),
            (
                "up.0.res.2.conv1.weight",
                "up_blocks.2.resnets.2.conv1.weight",
            ),
            (
                "up.1.attn.2.to_k.bias",
                "up_blocks.1.attentions.2.to_k.bias",
            ),
            (
                "up.2.upsample.weight",
                "up_blocks.0.upsamplers.0.conv.weight",
            ),
            ("norm_out.weight", "conv_norm_out.weight"),
            ("conv_out.bias", "conv_out.bias"),
        ];
        for (ours, theirs) in cases {
            assert_eq!(to_diffusers(ours, 3).as_deref(), Some(theirs), "{ours}");
        }
        for none in [
            "embedding.cond_proj.weight",
            "embedding.cond_null",
            "down.3.res.0.conv1.weight",
            "down.0.res.0",
            "block.0.weight",
        ] {
            assert_eq!(to_diffusers(none, 3), None, "{none}");
        }
    }

    /// Every parameter of every UNet preset has a diffusers name, and no two
    /// share one.
    #[test]
    fn every_unet_parameter_has_its_own_diffusers_name() {
        for preset in [
            ModelPreset::UnetTiny,
            ModelPreset::UnetMnistSmall,
            ModelPreset::DdpmCifar10,
        ] {
            let cfg = UNetConfig::from_preset(preset, 3, 32, 10);
            let vs = nn::VarStore::new(Device::Cpu);
            let _m = UNet::new(vs.root(), &cfg);
            let mut names: Vec<String> = vs
                .variables()
                .keys()
                .map(|n| to_diffusers(n, cfg.ch_mult.len()).unwrap_or_else(|| panic!("{n}")))
                .collect();
            let count = names.len();
            names.sort();
            names.dedup();
            assert_eq!(names.len(), count, "{preset:?}");
        }
    }

    #[test]
    fn names_are_ordered_as_data_flows_with_numbers_compared_as_numbers() {
        let mut names = vec![
            "conv_out.bias",
            "conv_out.weight",
            "up_blocks.0.resnets.0.conv1.weight",
            "down_blocks.10.resnets.0.conv1.weight",
            "down_blocks.2.resnets.0.conv1.weight",
            "mid_block.resnets.0.conv1.weight",
            "time_embedding.linear_1.weight",
            "conv_in.weight",
        ];
        names.sort_by(|a, b| network_order(a, b));
        assert_eq!(
            names,
            [
                "conv_in.weight",
                "time_embedding.linear_1.weight",
                "down_blocks.2.resnets.0.conv1.weight",
                "down_blocks.10.resnets.0.conv1.weight",
                "mid_block.resnets.0.conv1.weight",
                "up_blocks.0.resnets.0.conv1.weight",
                "conv_out.weight",
                "conv_out.bias",
            ]
        );
    }
}
