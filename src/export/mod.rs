//! A trained model written for other tools: `ddpm-lab export`. Each format is
//! one file; the command line picks the weights and hands them over, so
//! nothing here reads run folders or trains.

pub mod diffusers;
