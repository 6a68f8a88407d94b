//! After the solve: the image's creation time, the inline cache, the commit to the store, the
//! `--cache-to` exports, the `-o` outputs and `--push`.

use std::sync::Arc;

use kiln_executor::snapshot::SnapshotId;
use kiln_image::ImageStore;
use kiln_llb::Digest;
use kiln_llb::image::ImageConfig;

use super::request::{BuildError, BuildRequest, BuildResult};
use crate::error::EngineError;
use crate::progress::Reporter;
use crate::remote_cache::export::{ExportInput, Exported, UsedRecords};
use crate::remote_cache::{CacheExport, RemoteCache};

/// What the solve produced, for [`finish`].
pub(super) struct Solved {
    /// The result's top snapshot (`None`: an empty filesystem).
    pub top: Option<SnapshotId>,
    /// The result's cache key, which the image's creation time is remembered under.
    pub key: kiln_solver::CacheKey,
    /// The image config the frontend made.
    pub config: ImageConfig,
    /// Every cache record the build used, for `--cache-to`.
    pub used: UsedRecords,
    /// What `--provenance` records, when it was asked for.
    pub provenance: Option<crate::provenance::Inputs>,
}

/// Commits the result and sends it where the request says. Runs on a blocking thread.
pub(super) fn finish(
    images: Arc<ImageStore>,
    request: &BuildRequest,
    solved: Solved,
    remotes: &[RemoteCache],
    reporter: &Reporter,
) -> Result<BuildResult, BuildError> {
    let outputs = request.outputs();
    let mut commit = kiln_image::output::commit_options(&outputs, &request.commit);
    if commit.source_date_epoch.is_none() {
        commit.source_date_epoch = request.options.source_date_epoch.map(|t| t.max(0) as u64);
    }
    let mut config = solved.config;
    let (created_key, created) = match commit.source_date_epoch {
        Some(t) => (None, kiln_llb::image::format_rfc3339(t as i64, 0)),
        None => {
            let (key, time) = reuse_created_time(&images, &solved.key, &config, remotes)?;
            (Some(key), time)
        }
    };
    fill_created(&mut config, &created);
    let input = ExportInput {
        used: solved.used.snapshot(),
        top: solved.top.clone(),
        created: created_key.map(|key| (key, created.clone())),
    };
    if request.cache_to.contains(&CacheExport::Inline) {
        let doc = crate::remote_cache::export::inline_document(&images, &input)?;
        config.inline_cache = Some(String::from_utf8_lossy(&doc.to_bytes()).into_owned());
    }
    let names = request.store_names();
    let image = images.commit_image(solved.top.as_ref(), config, &names, &commit)?;
    // With provenance the names point at an index of the image and its attestation.
    let top = match &solved.provenance {
        Some(p) => Some(crate::provenance::attach(
            &images, request, p, &image, &names,
        )?),
        None => None,
    };
    let cache_exports = export_caches(&images, &request.cache_to, &input, reporter)?;
    for output in &outputs {
        kiln_image::export::export_top(
            &images,
            &image,
            top.as_ref(),
            output,
            &request.tags,
            commit.source_date_epoch,
        )?;
        if let Some(dest) = &output.dest {
            reporter.info(format!("exporting to {} done", dest.display()));
        }
    }
    let pushed = if request.push || outputs.iter().any(|o| o.push) {
        push(&images, &names, reporter)?
    } else {
        Vec::new()
    };
    let names = names
        .iter()
        .map(|n| kiln_image::store_name(n))
        .collect::<Result<_, _>>()?;
    Ok(BuildResult {
        image,
        names,
        cache_exports,
        pushed,
        index: None,
    })
}

/// [`finish`] for several platforms: each result is committed as an image, an index over them
/// gets the names, archives hold the index, a `type=local` output gets a directory per
/// platform (`linux_arm64`, as BuildKit's) and `type=tar` one tar of those directories, and
/// `--push` pushes the index with every manifest.
pub(super) fn finish_platforms(
    images: Arc<ImageStore>,
    request: &BuildRequest,
    solved: Vec<Solved>,
    remotes: &[RemoteCache],
    reporter: &Reporter,
) -> Result<BuildResult, BuildError> {
    let outputs = request.outputs();
    let mut commit = kiln_image::output::commit_options(&outputs, &request.commit);
    if commit.source_date_epoch.is_none() {
        commit.source_date_epoch = request.options.source_date_epoch.map(|t| t.max(0) as u64);
    }
    let mut built = Vec::with_capacity(solved.len());
    for one in solved {
        let mut config = one.config;
        let created = match commit.source_date_epoch {
            Some(t) => kiln_llb::image::format_rfc3339(t as i64, 0),
            None => reuse_created_time(&images, &one.key, &config, remotes)?.1,
        };
        fill_created(&mut config, &created);
        built.push(images.commit_image(one.top.as_ref(), config, &[], &commit)?);
    }
    let names = request.store_names();
    let index = images.store_index(&built, &names)?;
    for output in &outputs {
        match output.kind {
            kiln_image::OutputKind::Local => {
                let Some(dest) = &output.dest else {
                    return Err(EngineError::Bug("a local output without dest".into()).into());
                };
                std::fs::create_dir_all(dest).map_err(|source| EngineError::Io {
                    what: format!("create {}", dest.display()),
                    source,
                })?;
                for image in &built {
                    let platform = kiln_image::platform_of_config(&image.config);
                    let mut one = output.clone();
                    one.dest = Some(dest.join(super::platforms::dir_name(&platform)));
                    kiln_image::export::export_top(
                        &images,
                        image,
                        None,
                        &one,
                        &request.tags,
                        commit.source_date_epoch,
                    )?;
                }
            }
            kiln_image::OutputKind::Tar => {
                let Some(dest) = &output.dest else {
                    return Err(EngineError::Bug("a tar output without dest".into()).into());
                };
                // One tar with a directory per platform, as BuildKit's tar exporter writes.
                let tree = images.tempdir("export-tar-")?;
                for image in &built {
                    let platform = kiln_image::platform_of_config(&image.config);
                    let dir = tree.path().join(super::platforms::dir_name(&platform));
                    std::fs::create_dir_all(&dir).map_err(|source| EngineError::Io {
                        what: format!("create {}", dir.display()),
                        source,
                    })?;
                    kiln_image::export::apply_layers(&images, image, &dir)?;
                }
                kiln_image::export::into_file(dest, |out| {
                    kiln_image::export::write_tree_tar(tree.path(), out, commit.source_date_epoch)
                })?;
            }
            _ => kiln_image::export::export_top(
                &images,
                &built[0],
                Some(&index),
                output,
                &request.tags,
                commit.source_date_epoch,
            )?,
        }
        if let Some(dest) = &output.dest {
            reporter.info(format!("exporting to {} done", dest.display()));
        }
    }
    let pushed = if request.push || outputs.iter().any(|o| o.push) {
        push(&images, &names, reporter)?
    } else {
        Vec::new()
    };
    let names = names
        .iter()
        .map(|n| kiln_image::store_name(n))
        .collect::<Result<_, _>>()?;
    let image = built
        .into_iter()
        .next()
        .ok_or_else(|| EngineError::Bug("a build of no platforms".into()))?;
    Ok(BuildResult {
        image,
        names,
        cache_exports: Vec::new(),
        pushed,
        index: Some(index.digest),
    })
}

/// Pushes every name of the result to its registry.
fn push(
    images: &ImageStore,
    names: &[String],
    reporter: &Reporter,
) -> Result<Vec<(String, Digest)>, BuildError> {
    if names.is_empty() {
        return Err(BuildError::Invalid(
            "--push needs a name: give -t REGISTRY/REPOSITORY:TAG".into(),
        ));
    }
    let client = kiln_registry::Client::from_env()
        .map_err(|e| crate::error::registry_error("push", &names[0], e))?;
    let mut pushed = Vec::new();
    for name in names {
        let done = images.push(&client, name, None, &|event| {
            reporter.info(format!(
                "push {name}: {}",
                kiln_image::describe_push(&event)
            ));
        })?;
        let canonical = kiln_image::store_name(name)?;
        reporter.info(format!("pushed {canonical} {}", done.descriptor.digest));
        pushed.push((canonical, done.descriptor.digest));
    }
    Ok(pushed)
}

/// Writes every `--cache-to` but `inline` (written with the image). A failed export with
/// `ignore-error=true` is a warning, as in BuildKit.
fn export_caches(
    images: &ImageStore,
    specs: &[CacheExport],
    input: &ExportInput,
    reporter: &Reporter,
) -> Result<Vec<Exported>, BuildError> {
    let mut out = Vec::new();
    for spec in specs {
        let ignore_error = match spec {
            CacheExport::Registry { ignore_error, .. }
            | CacheExport::Local { ignore_error, .. } => *ignore_error,
            CacheExport::Inline => continue,
        };
        match crate::remote_cache::export::export(images, spec, input, None) {
            Ok(done) => {
                let digest = done.digest.map(|d| format!(" {d}")).unwrap_or_default();
                reporter.info(format!(
                    "exporting cache to {}: {} records, {} layers{digest} done",
                    done.destination, done.records, done.layers
                ));
                out.push(done);
            }
            Err(e) if ignore_error => reporter.warn(format!(
                "failed to export cache: {}",
                crate::error::error_chain(&e)
            )),
            Err(e) => return Err(e.into()),
        }
    }
    Ok(out)
}

/// Sets the image's and the new history entries' `created` time where the frontend left them
/// empty (it fills them only for SOURCE_DATE_EPOCH).
fn fill_created(config: &mut ImageConfig, now: &str) {
    let now = now.to_string();
    if config.created.is_none() {
        config.created = Some(now.clone());
    }
    for h in &mut config.history {
        if h.created.is_none() {
            h.created = Some(now.clone());
        }
    }
}

/// The creation time of an image built from exactly this result and config before, or now.
/// Rebuilding an unchanged Dockerfile thus gives the same image ID, as with `docker build`.
///
/// Returns the creation key (hex) with the time; an imported cache may supply the time of the
/// build that exported it.
fn reuse_created_time(
    images: &ImageStore,
    result_key: &kiln_solver::CacheKey,
    config: &ImageConfig,
    remotes: &[RemoteCache],
) -> Result<(String, String), EngineError> {
    use sha2::Digest as _;
    let mut h = sha2::Sha256::new();
    h.update(b"kiln-engine/image-created/v1\0");
    h.update(result_key.as_bytes());
    h.update(serde_json::to_vec(config).unwrap_or_default());
    let key = kiln_cache::CacheKey(h.finalize().into());
    let key_hex = hex::encode(key.0);
    // Two builds of one result finishing at once in this process (a worker serving two
    // clients) must agree on the time, or they would make two images.
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(record) = images.store().get_record(&key)?
        && !record.description.is_empty()
    {
        return Ok((key_hex, record.description));
    }
    let time = remotes
        .iter()
        .find_map(|r| r.created(&key_hex))
        .map(str::to_string)
        .unwrap_or_else(kiln_image::now_rfc3339);
    let mut record = kiln_cache::CacheRecord::new(None);
    record.description = time.clone();
    images.store().put_record(&key, &record)?;
    Ok((key_hex, time))
}
