//! Several target platforms in one build (`--platform linux/amd64,linux/arm64`): the
//! Dockerfile is lowered once per platform, the graphs become one definition (equal ops are one
//! vertex, so a `FROM --platform=$BUILDPLATFORM` stage that does not depend on the target runs
//! once), and the solve produces one root per platform.

use kiln_frontend::lower::Lowered;
use kiln_llb::{Definition, Digest, Input, OpMetadata, Platform};

use super::request::{BuildError, BuildRequest};
use crate::error::EngineError;

/// The platforms a request builds: `None` alone for a build of one (its own or the host's).
pub(super) fn of(request: &BuildRequest) -> Vec<Option<Platform>> {
    if request.platforms.len() > 1 {
        request.platforms.iter().cloned().map(Some).collect()
    } else {
        vec![
            request
                .platforms
                .first()
                .cloned()
                .or_else(|| request.options.platform.clone()),
        ]
    }
}

/// What a build of several platforms cannot do yet, refused before anything runs.
pub(super) fn check_supported(request: &BuildRequest) -> Result<(), BuildError> {
    if request.platforms.len() < 2 {
        return Ok(());
    }
    let refuse = |what: &str| {
        Err(EngineError::NotSupported(format!("{what} with several platforms")).into())
    };
    if request.extras.provenance.is_some() {
        return refuse("--provenance");
    }
    if !request.cache_to.is_empty() {
        return refuse("--cache-to");
    }
    Ok(())
}

/// One definition for the per-platform graphs, with the root of each in order. Steps that only
/// some platforms have are named with the platform (`[linux/arm64 2/2] RUN ...`), as BuildKit
/// shows them; steps every platform shares keep their names.
pub(super) fn merge(
    lowered: &[(Platform, &Lowered)],
) -> Result<(Definition, Vec<Input>), BuildError> {
    let mut owners: std::collections::BTreeMap<Digest, Vec<&Platform>> = Default::default();
    for (platform, l) in lowered {
        for (digest, _) in l.definition.topological() {
            owners.entry(digest).or_default().push(platform);
        }
    }
    let mut merged = Definition::new();
    let mut roots = Vec::new();
    for (_, l) in lowered {
        let root = merged
            .absorb(&l.definition, |digest, mut meta: OpMetadata| {
                let owned_by = owners.get(digest).map_or(&[][..], Vec::as_slice);
                if owned_by.len() < lowered.len()
                    && let (Some(name), Some(first)) = (&meta.name, owned_by.first())
                {
                    meta.name = Some(platform_name(name, first));
                }
                meta
            })
            .map_err(|e| EngineError::Bug(format!("merging the platforms' graphs: {e}")))?
            .ok_or_else(|| {
                EngineError::Bug("the frontend produced a graph without a root".into())
            })?;
        roots.push(root);
    }
    if let Some(first) = roots.first() {
        merged
            .set_root(*first)
            .map_err(|e| EngineError::Bug(format!("merging the platforms' graphs: {e}")))?;
    }
    Ok((merged, roots))
}

/// `[build 2/3] RUN x` → `[linux/arm64 build 2/3] RUN x`; a name without brackets gets them.
fn platform_name(name: &str, platform: &Platform) -> String {
    match name.strip_prefix('[') {
        Some(rest) => format!("[{platform} {rest}"),
        None => format!("[{platform}] {name}"),
    }
}

/// The directory of one platform in a `type=local` output, as BuildKit names it.
pub(super) fn dir_name(platform: &Platform) -> String {
    platform.to_string().replace('/', "_")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn several_platforms_refuse_what_they_cannot_do_yet() {
        let mut request = BuildRequest::new(None, b"FROM scratch\n".to_vec(), "Dockerfile");
        request.platforms = Platform::parse_list("linux/amd64,linux/arm64").unwrap();
        assert!(check_supported(&request).is_ok());
        assert_eq!(of(&request).len(), 2);
        request.extras.provenance = Some(crate::extras::ProvenanceMode::Min);
        let err = check_supported(&request).unwrap_err().to_string();
        assert_eq!(
            err,
            "not supported yet: --provenance with several platforms"
        );
        // One platform is a build like any other.
        request.platforms.truncate(1);
        assert!(check_supported(&request).is_ok());
        assert_eq!(
            of(&request),
            [Some(Platform::parse("linux/amd64").unwrap())]
        );
    }

    #[test]
    fn names_carry_the_platform() {
        let arm64 = Platform::parse("linux/arm64").unwrap();
        assert_eq!(
            platform_name("[build 2/3] RUN make", &arm64),
            "[linux/arm64 build 2/3] RUN make"
        );
        assert_eq!(platform_name("FROM x", &arm64), "[linux/arm64] FROM x");
        assert_eq!(
            dir_name(&Platform::parse("linux/arm/v7").unwrap()),
            "linux_arm_v7"
        );
    }
}
