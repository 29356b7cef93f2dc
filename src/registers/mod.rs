//! The registers vakt is given: devices, subscribers, and the directory of care providers,
//! areas, patrols and routing rules. Each is imported from CSV by the one loader in [`csv`]
//! (all rows or none) and fails with its one [`ImportError`].

pub mod csv;
pub mod devices;
pub mod directory;
pub mod learn;
pub mod numbers;
pub mod problem;
pub mod search;
pub mod staff;
pub mod subscribers;

pub use self::csv::{ImportError, ImportFile, Problem};
