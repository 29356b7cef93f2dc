//! The centre's own staff, as the directory lists them (`staff.csv`): whom a supervisor calls
//! in when too few operators are on duty or Calls wait too long. Its CSV import and checks are
//! in `crate::registers::staff`.

use serde::{Deserialize, Serialize};

/// One person who may be called in.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StaffMember {
    /// Name, e.g. "Karin Berg".
    pub name: String,
    /// Phone to call them on.
    pub phone: String,
    /// Their role at the centre, in words ("larmoperatör", "reserve").
    pub role: String,
    /// What the supervisor should know ("nights only", "lives 10 min away"); may be empty.
    pub note: String,
}
