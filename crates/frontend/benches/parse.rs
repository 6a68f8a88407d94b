//! Benchmarks: parsing, typing and lowering a large generated Dockerfile (40 stages, ~2,000
//! instructions with continuations, heredocs and variable expansion).

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use kiln_frontend::instructions::Dockerfile;
use kiln_frontend::lower::{BuildOptions, ImageResolver, ResolvedImage, lower};
use kiln_frontend::syntax;
use kiln_llb::image::{ImageConfig, RootFs};
use kiln_llb::{Digest, Platform};

const STAGES: usize = 40;
const STEPS_PER_STAGE: usize = 12;

/// Resolves every base image to one fixed config, without I/O: the bench measures the
/// frontend alone.
struct FixedBase;

impl ImageResolver for FixedBase {
    fn resolve(&self, reference: &str, platform: &Platform) -> Result<ResolvedImage, String> {
        Ok(ResolvedImage {
            reference: reference.to_owned(),
            digest: Some(Digest::of(b"bench base manifest")),
            config: ImageConfig {
                architecture: platform.architecture.clone(),
                os: platform.os.clone(),
                rootfs: RootFs {
                    kind: "layers".into(),
                    diff_ids: vec![Digest::of(b"bench base layer")],
                },
                ..ImageConfig::default()
            },
        })
    }
}

/// A Dockerfile shaped like a large monorepo build: each stage copies from the previous one,
/// so lowering keeps every stage in the target's graph.
fn dockerfile() -> String {
    let mut s = String::from("# syntax=docker/dockerfile:1\nARG BASE=busybox\nARG VERSION=1.0\n");
    for stage in 0..STAGES {
        s.push_str(&format!("\nFROM ${{BASE}} AS stage{stage}\n"));
        s.push_str(&format!(
            "ARG VERSION\nENV STAGE={stage} \\\n    APP_VERSION=${{VERSION}} \\\n    PATH=/opt/s{stage}/bin:$PATH\n"
        ));
        s.push_str(&format!(
            "LABEL org.example.stage=\"{stage}\" org.example.version=\"${{VERSION}}\"\n"
        ));
        s.push_str(&format!("WORKDIR /opt/s{stage}\n"));
        if stage > 0 {
            s.push_str(&format!(
                "COPY --from=stage{} /opt/s{}/out /opt/s{stage}/in\n",
                stage - 1,
                stage - 1
            ));
        }
        s.push_str(&format!(
            "COPY --chown=1000:1000 src/module{stage}/ /opt/s{stage}/src/\n"
        ));
        for step in 0..STEPS_PER_STAGE {
            s.push_str(&format!(
                "RUN mkdir -p /opt/s{stage}/out \\\n && echo \"stage $STAGE step {step} of ${{APP_VERSION:-dev}}\" \\\n    >> /opt/s{stage}/out/log.txt \\\n && ls /opt/s{stage} | wc -l > /opt/s{stage}/out/count{step}\n"
            ));
        }
        s.push_str(&format!(
            "COPY <<EOF /opt/s{stage}/out/config.ini\n[stage]\nid = {stage}\nversion = ${{VERSION}}\nEOF\n"
        ));
        s.push_str("USER 1000:1000\nEXPOSE 8080/tcp\n");
        s.push_str(&format!(
            "CMD [\"/opt/s{stage}/bin/run\", \"--stage\", \"{stage}\"]\n"
        ));
    }
    s
}

fn bench(c: &mut Criterion) {
    let text = dockerfile();
    let opts = BuildOptions {
        platform: Some(Platform::parse("linux/amd64").expect("a valid platform")),
        ..BuildOptions::default()
    };
    // Fail loudly (not with a meaningless number) if the generated file stops being valid.
    lower(text.as_bytes(), &opts, &FixedBase).expect("the generated Dockerfile lowers");

    let mut group = c.benchmark_group("large_dockerfile");
    group.throughput(Throughput::Bytes(text.len() as u64));
    group.bench_function("syntax_parse", |b| {
        b.iter(|| syntax::parse(text.as_bytes()).expect("parses"))
    });
    group.bench_function("parse_and_type", |b| {
        b.iter(|| Dockerfile::parse(text.as_bytes()).expect("types"))
    });
    group.bench_function("lower", |b| {
        b.iter(|| lower(text.as_bytes(), &opts, &FixedBase).expect("lowers"))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
