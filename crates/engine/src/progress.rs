//! What a build reports while it runs: the steps it will show, what happens to each step (the
//! solver's events), and the engine's own warnings and notices. A front end renders them; the
//! engine never prints.

use crate::explain::StepExplanation;
use kiln_llb::Digest;
use kiln_solver::Event;
use tokio::sync::mpsc::UnboundedSender;

/// One thing a build reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// The steps the build shows, in graph order, once the Dockerfile is lowered: each vertex
    /// with its progress name (`[builder 2/4] RUN make`). Vertices without a name (the context
    /// source) are left out, as BuildKit hides them.
    Steps(Vec<(Digest, String)>),
    /// Something happened to a step.
    Vertex(Event<Digest>),
    /// Something the user should act on: a cache that could not be imported or exported.
    Warning(String),
    /// Something the build did besides its steps: a base image pulled, a cache imported or
    /// exported, an output written, an image pushed.
    Info(String),
    /// Why each step that ran was not taken from the cache, in build order (`--explain`),
    /// once the steps are done (also when one failed). Empty when nothing ran.
    Explain(Vec<StepExplanation>),
}

/// Where a build sends its progress.
pub type ProgressSender = UnboundedSender<Progress>;

/// A build's handle on its progress channel, cheap to clone into the places that report.
#[derive(Debug, Clone, Default)]
pub(crate) struct Reporter(Option<ProgressSender>);

impl Reporter {
    pub(crate) fn new(sender: Option<ProgressSender>) -> Reporter {
        Reporter(sender)
    }

    pub(crate) fn send(&self, progress: Progress) {
        if let Some(tx) = &self.0 {
            // A front end that went away stops listening; the build goes on.
            let _ = tx.send(progress);
        }
    }

    pub(crate) fn warn(&self, message: impl Into<String>) {
        self.send(Progress::Warning(message.into()));
    }

    pub(crate) fn info(&self, message: impl Into<String>) {
        self.send(Progress::Info(message.into()));
    }
}
