//! The registers vakt is given: devices, subscribers, and the directory of care providers,
//! areas, patrols and routing rules; each with its CSV import (all rows or none).

pub mod devices;
pub mod directory;
pub mod subscribers;
