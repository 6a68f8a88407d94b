//! The compose model: Compose files loaded, interpolated, merged, validated and rendered, as
//! Docker Compose v2 does. Pure apart from reading the files: no containers here; the planner
//! (`plan`) turns the model and the containers that exist into actions the CLI runs.
//!
//! ```no_run
//! use kiln_compose::{LoadOptions, Project};
//!
//! let mut opts = LoadOptions::from_process().unwrap();
//! opts.files = vec!["compose.yaml".into()];
//! match Project::load(&opts) {
//!     Ok(loaded) => {
//!         for w in &loaded.warnings {
//!             eprint!("{}", w.render());
//!         }
//!         print!("{}", loaded.project.to_yaml());
//!         for name in loaded.project.start_order() {
//!             println!("{name} {}", loaded.project.config_hash(&name).unwrap());
//!         }
//!     }
//!     Err(e) => eprint!("{}", e.render()),
//! }
//! ```
//!
//! The pipeline (`load.rs`): find the files (`options.rs`) → for each file, YAML with positions
//! (`yaml.rs`) → interpolation (`interpolate.rs`, variables from `dotenv.rs` files and the shell)
//! → short forms normalized and paths resolved (`merge.rs`, `paths.rs`) → `include`
//! (`include.rs`) and `extends` (`extends.rs`) → files merged (`merge.rs`) → the typed model
//! (`convert/`, `model.rs`) → profiles (`profiles.rs`) → cross-checks (`validate.rs`). Every
//! error is a [`Diagnostic`] with the file, line, column and model path. On the model:
//! dependency order (`order.rs`), config hashes (`hash.rs`), `config` output (`render.rs`), and
//! the convergence planner (`plan.rs`: desired state against observed containers → actions).
#![deny(unsafe_code)]

mod convert;
pub mod diagnostic;
mod dotenv;
mod error;
mod extends;
mod hash;
mod include;
pub mod interpolate;
mod load;
mod merge;
pub mod model;
mod options;
mod order;
mod paths;
pub mod plan;
mod profiles;
mod render;
pub mod units;
mod validate;
mod yaml;

pub use convert::{parse_port, parse_volume, split_command};
pub use diagnostic::{Diagnostic, Severity};
pub use error::ComposeError;
pub use load::Loaded;
pub use model::*;
pub use options::{DEFAULT_FILES, LoadOptions, OVERRIDE_FILES, normalize_project_name};

impl Project {
    /// Loads a project as `docker compose` would with these flags and this environment.
    /// Warnings (unset variables, obsolete `version`, ...) come back as data with the project;
    /// any error fails the load with every located diagnostic found.
    pub fn load(opts: &LoadOptions) -> Result<Loaded, ComposeError> {
        load::load(opts)
    }
}
