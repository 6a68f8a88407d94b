//! Lowering: a Dockerfile plus build options become an LLB graph and the image config of the
//! target stage, with the semantics of `docker build` (BuildKit's dockerfile2llb).
//!
//! The entry point is [`lower`]. Base-image configs come from an [`ImageResolver`] that the
//! caller provides; the frontend does no I/O of its own.

mod copy;
mod lint;
mod metadata;
mod mounts;
mod program;
mod run;
mod stage;
mod step;
mod util;

use std::collections::BTreeMap;

use kiln_llb::image::ImageConfig;
use kiln_llb::{Definition, Digest, NetworkMode, Platform};

use crate::checks::CheckWarning;
use crate::diagnostic::Diagnostic;
use crate::instructions::Dockerfile;
use crate::syntax;

pub use util::default_path_env;

/// Everything about a build that is not in the Dockerfile.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// `--build-arg NAME=value`, in the order given; a later value for a name wins.
    pub build_args: Vec<(String, String)>,
    /// `--target`; the last stage when `None`.
    pub target: Option<String>,
    /// `--label`s added to the target image's config.
    pub labels: BTreeMap<String, String>,
    /// The platform to build for; the host's when `None`.
    pub platform: Option<Platform>,
    /// `--no-cache`: every step re-runs.
    pub no_cache: bool,
    /// `--no-cache-filter`: steps of these stages re-run.
    pub no_cache_filter: Vec<String>,
    /// The network mode RUN steps get unless they say `--network`.
    pub network: NetworkMode,
    /// Name of the local source holding the build context.
    pub context_name: String,
    /// The Dockerfile's name as the user gave it, for diagnostics and the source map.
    pub dockerfile_name: String,
    /// `.dockerignore` patterns, applied to every read of the context.
    pub dockerignore: Vec<String>,
    /// `SOURCE_DATE_EPOCH` (also accepted as a build arg, which the CLI may pass instead).
    pub source_date_epoch: Option<i64>,
    /// Hostname inside RUN steps (`--add-host`-style settings are not supported yet).
    pub hostname: Option<String>,
    /// `--check`: without `--target`, lower every stage (not only the last one's) so that
    /// every instruction is checked; report an error beside the warnings instead of failing.
    pub check_only: bool,
    /// `--build-context NAME=...`: stages and images named NAME come from here instead.
    pub named_contexts: BTreeMap<String, NamedContext>,
}

/// Where a named build context's files come from, as lowering sees it (the engine has already
/// turned directories into local sources and OCI layouts into stored images).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NamedContext {
    /// A directory sent as the local source of this name (files only, no image config).
    Local { source: String },
    /// An image, looked up through the [`ImageResolver`] (`docker-image://REF`, or an
    /// `oci-layout://` the engine stored).
    Image { reference: String },
    /// A git repository (`https://host/repo.git#ref:subdir`).
    Git {
        remote: String,
        reference: Option<String>,
        subdir: Option<String>,
    },
    /// One file downloaded over HTTP(S).
    Http { url: String },
}

impl Default for BuildOptions {
    fn default() -> BuildOptions {
        BuildOptions {
            build_args: Vec::new(),
            target: None,
            labels: BTreeMap::new(),
            platform: None,
            no_cache: false,
            no_cache_filter: Vec::new(),
            network: NetworkMode::Default,
            context_name: "context".to_owned(),
            dockerfile_name: "Dockerfile".to_owned(),
            dockerignore: Vec::new(),
            source_date_epoch: None,
            hostname: None,
            check_only: false,
            named_contexts: BTreeMap::new(),
        }
    }
}

/// What a resolver knows about an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedImage {
    /// The canonical reference, e.g. `docker.io/library/busybox:latest`.
    pub reference: String,
    /// The manifest digest the build will use, pinned into the graph.
    pub digest: Option<Digest>,
    pub config: ImageConfig,
}

/// Looks up base images for FROM and `COPY --from=<image>`.
///
/// This trait is a cycle breaker: the frontend must not depend on the crates that talk to
/// registries and the local store, so it defines what it needs here and the `engine` crate
/// implements it. Tests use a fake. `reference` is normalized (`docker.io/library/x:latest`).
pub trait ImageResolver {
    fn resolve(&self, reference: &str, platform: &Platform) -> Result<ResolvedImage, String>;
}

/// An ARG as `--print=outline` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutlineArg {
    pub name: String,
    /// The default written in the Dockerfile (before build-arg overrides), if any.
    pub default: Option<String>,
    /// The value this build uses, if any.
    pub value: Option<String>,
    /// The comment right above the ARG line, if any.
    pub description: Option<String>,
    /// 1-based line of the ARG instruction.
    pub line: u32,
}

/// A secret or ssh id a build uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutlineMount {
    pub id: String,
    pub required: bool,
    pub line: u32,
}

/// A stage as `--print=targets` and `--print=outline` show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageInfo {
    /// The `AS` name, or `stage-N`.
    pub name: String,
    pub named: bool,
    /// The base as written in FROM.
    pub base: String,
    pub platform: Option<String>,
    /// The comment right above FROM.
    pub description: Option<String>,
    pub line: u32,
}

/// The build's shape without its graph: for `--print=outline` and `--print=targets`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Outline {
    /// The target stage's name (`default` when it is unnamed).
    pub target: String,
    /// Every stage of the Dockerfile, in order.
    pub stages: Vec<StageInfo>,
    /// The ARGs the target uses (global ones first), in order of declaration.
    pub args: Vec<OutlineArg>,
    pub secrets: Vec<OutlineMount>,
    pub ssh: Vec<OutlineMount>,
}

/// The result of lowering.
#[derive(Debug, Clone)]
pub struct Lowered {
    /// The graph of exactly what the target needs; its root is the target's filesystem.
    pub definition: Definition,
    /// The target image's config (the `created` times are set only with SOURCE_DATE_EPOCH;
    /// the exporter fills them otherwise, and fills `rootfs`).
    pub config: ImageConfig,
    pub outline: Outline,
    /// What the build checks found, in Dockerfile order.
    pub warnings: Vec<CheckWarning>,
    /// With `check_only`: why lowering failed (or `check=error=true` with violations); the
    /// graph and config are then empty.
    pub check_error: Option<Box<Diagnostic>>,
}

/// Lowers `dockerfile` for `opts`, resolving base images through `resolver`.
///
/// Errors carry the Dockerfile location of the instruction that failed and the file name
/// from `opts.dockerfile_name`.
pub fn lower(
    dockerfile: &[u8],
    opts: &BuildOptions,
    resolver: &dyn ImageResolver,
) -> Result<Lowered, Diagnostic> {
    let with_file = |d: Diagnostic| d.with_file(opts.dockerfile_name.clone());
    let parsed = parse(dockerfile).map_err(with_file)?;
    program::lower_program(&parsed, dockerfile, opts, resolver).map_err(with_file)
}

/// The stages of a Dockerfile with their descriptions, without lowering anything (for
/// `--print=targets`).
pub fn stages(dockerfile: &[u8]) -> Result<Vec<StageInfo>, Diagnostic> {
    Ok(stage::stage_infos(&parse(dockerfile)?))
}

/// Syntax, then typed instructions: lowering reads the same [`Dockerfile`] as every other
/// consumer, so flags, argument counts and names are checked in one place.
fn parse(source: &[u8]) -> Result<Dockerfile, Diagnostic> {
    let ast = syntax::parse(source)?;
    Dockerfile::from_ast_allow_no_stage(&ast)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `FROM scratch` needs no image, so no resolver call may happen.
    struct NoImages;

    impl ImageResolver for NoImages {
        fn resolve(&self, reference: &str, _: &Platform) -> Result<ResolvedImage, String> {
            Err(format!("no images in this test: {reference}"))
        }
    }

    fn lower_text(text: &str, network: NetworkMode) -> Result<Lowered, Diagnostic> {
        let opts = BuildOptions {
            network,
            ..BuildOptions::default()
        };
        lower(text.as_bytes(), &opts, &NoImages)
    }

    /// Issue 20: a stage's RUN steps carry its platform when it is not the host's, and a
    /// `$BUILDPLATFORM` stage lowers to the same ops whatever the target, so a build of several
    /// platforms runs it once.
    #[test]
    fn run_steps_carry_the_stage_platform() {
        let text = "FROM --platform=$BUILDPLATFORM scratch AS build\n\
                    RUN make\n\
                    FROM scratch\n\
                    COPY --from=build / /\n\
                    RUN test\n";
        let lower_for = |platform: &str| {
            let opts = BuildOptions {
                platform: Some(Platform::parse(platform).unwrap()),
                ..BuildOptions::default()
            };
            lower(text.as_bytes(), &opts, &NoImages).unwrap()
        };
        let foreign = if Platform::host().architecture == "arm64" {
            "linux/amd64"
        } else {
            "linux/arm64"
        };
        let cross = lower_for(foreign);
        let dump = crate::print::llb_text(&cross.definition);
        let platform_of = |arg: &str| {
            cross
                .definition
                .topological()
                .find_map(|(_, op)| match op {
                    kiln_llb::Op::Exec(e) if e.args.iter().any(|a| a.ends_with(arg)) => {
                        Some(e.platform.clone())
                    }
                    _ => None,
                })
                .unwrap()
        };
        assert_eq!(platform_of("make"), None, "{dump}");
        assert_eq!(
            platform_of("test"),
            Some(Platform::parse(foreign).unwrap()),
            "{dump}"
        );
        assert_eq!(
            dump.matches(&format!("platform: {foreign}")).count(),
            1,
            "{dump}"
        );
        assert_eq!(
            cross.config.architecture,
            Platform::parse(foreign).unwrap().architecture
        );

        let native = lower_for(&Platform::host().to_string());
        let native_dump = crate::print::llb_text(&native.definition);
        assert!(!native_dump.contains("platform:"), "{native_dump}");
        let ops = |l: &Lowered| -> std::collections::BTreeSet<Digest> {
            l.definition.topological().map(|(d, _)| d).collect()
        };
        let shared: Vec<Digest> = ops(&cross).intersection(&ops(&native)).copied().collect();
        // The build stage's scratch and its RUN are the same vertices for both targets.
        assert!(
            shared.iter().any(|d| matches!(
                cross.definition.get(d),
                Some(kiln_llb::Op::Exec(e)) if e.args.iter().any(|a| a.contains("make"))
            )),
            "{dump}\n{native_dump}"
        );
    }

    #[test]
    fn run_device_lowers_into_the_exec_op() {
        let text =
            "FROM scratch\nRUN --device=/dev/fuse --device=vendor.com/gpu=all,required true\n";
        let lowered = lower_text(text, NetworkMode::Default).unwrap();
        let dump = crate::print::llb_text(&lowered.definition);
        assert!(
            dump.contains("device: /dev/fuse device: vendor.com/gpu=all (required)"),
            "{dump}"
        );
        let err = lower_text(
            "FROM scratch\nRUN --device=/dev/fuse,colour=red true\n",
            NetworkMode::Default,
        )
        .unwrap_err();
        assert!(
            err.message.contains("invalid device option"),
            "{}",
            err.message
        );
        assert_eq!(
            err.span.map(|s| (s.start.line, s.start.column)),
            Some((2, 5))
        );
    }

    #[test]
    fn explicit_network_default_overrides_the_build_network() {
        let text = "FROM scratch\nRUN true\nRUN --network=default true\n";
        let dump = crate::print::llb_text(&lower_text(text, NetworkMode::None).unwrap().definition);
        assert_eq!(dump.matches("network: none").count(), 1, "{dump}");
    }

    #[test]
    fn unknown_flag_help_names_the_flag_with_its_dashes() {
        let err =
            lower_text("FROM scratch\nCOPY --chwon=1 a /b\n", NetworkMode::Default).unwrap_err();
        assert_eq!(err.message, "unknown flag: --chwon");
        assert_eq!(err.help.as_deref(), Some("did you mean --chown?"));
    }
}
