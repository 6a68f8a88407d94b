//! A long-lived engine for a process that runs many builds (`kiln serve`): one solver for all of
//! them, so two builds that reach the same vertex (same op on the same inputs, or the same
//! output key) run it once and both get its result, and one bound on parallel steps holds
//! across builds.

use std::sync::Arc;

use kiln_image::ImageStore;
use kiln_llb::Digest;
use kiln_solver::{CancellationToken, Solver, SolverConfig};

use super::{BuildError, BuildRequest, BuildResult};
use crate::ops::Vertex;
use crate::progress::ProgressSender;
use crate::value::RecordStore;

pub(super) type SharedSolver = Solver<Digest, Vertex, RecordStore>;

/// Builds over one image store with one shared solver. Cheap to clone.
#[derive(Clone)]
pub struct Engine {
    images: Arc<ImageStore>,
    solver: SharedSolver,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("root", &self.images.root())
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// An engine over `images`; `max_parallelism` bounds the steps that run at once across
    /// every build (default: the solver's).
    pub fn new(images: Arc<ImageStore>, max_parallelism: Option<usize>) -> Engine {
        let config = SolverConfig {
            max_parallelism: max_parallelism
                .unwrap_or_else(|| SolverConfig::default().max_parallelism),
        };
        let records = RecordStore::new(images.clone()).without_usage();
        Engine {
            images,
            solver: Solver::with_config(records, config),
        }
    }

    pub fn images(&self) -> &Arc<ImageStore> {
        &self.images
    }

    /// Runs a build as [`crate::build`] does, through the shared solver. A build that imports
    /// or exports a cache (`--cache-from`, `--cache-to`) or sets its own parallelism gets a
    /// solver of its own, because those need a cache store that sees only this build.
    pub async fn build(
        &self,
        request: BuildRequest,
        progress: Option<ProgressSender>,
        cancel: CancellationToken,
    ) -> Result<BuildResult, BuildError> {
        super::build_with_solver(
            self.images.clone(),
            request,
            progress,
            cancel,
            Some(&self.solver),
        )
        .await
    }
}

/// Whether a build can run on the shared solver (see [`Engine::build`]).
pub(super) fn can_share(request: &BuildRequest) -> bool {
    request.cache_from.is_empty()
        && request.cache_to.is_empty()
        && request.max_parallelism.is_none()
}
