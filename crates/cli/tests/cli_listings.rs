//! Listings and inspect as Docker prints them: columns sized to their content, `--format`
//! templates, `json`, `inspect -f`, and references refused with Docker's words.

mod common;

use common::Kiln;

fn stdout(k: &Kiln, args: &[&str]) -> String {
    let out = k.run(args);
    common::assert_success(&out, &args.join(" "));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The byte offset where each column starts in a line of a table (two or more spaces apart).
fn column_starts(line: &str) -> Vec<usize> {
    let mut starts = vec![0];
    let bytes = line.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b' ' && bytes.get(i + 1) == Some(&b' ') {
            while i < bytes.len() && bytes[i] == b' ' {
                i += 1;
            }
            starts.push(i);
        } else {
            i += 1;
        }
    }
    starts
}

#[test]
fn images_columns_line_up_whatever_the_cell_widths() {
    let Some(k) = Kiln::new("images columns") else {
        return;
    };
    let long = "a-rather-long-repository-name/with/several/parts";
    common::assert_success(&k.run(&["tag", "busybox", &format!("{long}:v1")]), "tag");
    let table = stdout(&k, &["images"]);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 3, "{table}");
    assert!(lines[0].starts_with("REPOSITORY "), "{table}");
    // "Less than a second ago" and the long name both fit: every row's columns start where the
    // header's do.
    let header = column_starts(lines[0]);
    assert_eq!(header.len(), 5, "{table}");
    for line in &lines[1..] {
        assert_eq!(column_starts(line), header, "{table}");
    }
    assert!(
        !lines[0].ends_with(' '),
        "the last column is not padded: {table:?}"
    );
}

#[test]
fn format_templates_json_and_quiet_work_on_images_and_history() {
    let Some(k) = Kiln::new("images format") else {
        return;
    };
    common::assert_success(&k.run(&["tag", "busybox", "app:1"]), "tag");
    let names = stdout(&k, &["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    assert_eq!(names, "app:1\nbusybox:latest\n");

    let custom = stdout(
        &k,
        &["images", "--format", "table {{.Repository}}\\t{{.Tag}}"],
    );
    let lines: Vec<&str> = custom.lines().collect();
    assert_eq!(
        lines[0].split_whitespace().collect::<Vec<_>>(),
        ["REPOSITORY", "TAG"]
    );
    assert_eq!(lines.len(), 3, "{custom}");

    let json = stdout(&k, &["images", "--format", "json"]);
    let rows: Vec<serde_json::Value> = json
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["Repository"], "app");
    assert_eq!(rows[0]["Tag"], "1");
    assert_eq!(rows[0]["ID"], rows[1]["ID"]);

    let quiet = stdout(&k, &["images", "-q"]);
    assert_eq!(quiet.lines().count(), 2);
    assert_eq!(quiet.lines().next().map(str::len), Some(12));

    let bad = k.run(&["images", "--format", "{{.Nope}}"]);
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("can't evaluate field Nope"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );

    let history = stdout(&k, &["history", "busybox"]);
    assert!(history.starts_with("IMAGE "), "{history}");
    let created_by = stdout(
        &k,
        &[
            "history",
            "--no-trunc",
            "--format",
            "{{.CreatedBy}}",
            "busybox",
        ],
    );
    assert!(created_by.starts_with("kiln import "), "{created_by}");
}

#[test]
fn inspect_formats_and_names_what_it_cannot_find() {
    let Some(k) = Kiln::new("inspect format") else {
        return;
    };
    let os = stdout(
        &k,
        &[
            "inspect",
            "-f",
            "{{.Os}}/{{.Architecture}} {{json .Config.Cmd}}",
            "busybox",
        ],
    );
    assert_eq!(
        os.trim(),
        format!("linux/{} [\"sh\"]", kiln_llb::Platform::host().architecture)
    );

    let both = k.run(&["inspect", "--type", "image", "busybox", "no-such-thing"]);
    assert!(!both.status.success());
    let printed: serde_json::Value = serde_json::from_slice(&both.stdout).expect("a JSON array");
    assert_eq!(printed.as_array().map(Vec::len), Some(1));
    assert!(
        String::from_utf8_lossy(&both.stderr).contains("Error: No such object: no-such-thing"),
        "{}",
        String::from_utf8_lossy(&both.stderr)
    );
}

#[test]
fn a_name_that_is_not_a_reference_is_refused_as_docker_refuses_it() {
    let Some(k) = Kiln::new("reference errors") else {
        return;
    };
    let out = k.run(&["tag", "busybox", "MyApp"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("repository name (library/MyApp) must be lowercase"),
        "{stderr}"
    );
    // FROM reads references with the same type and the same words.
    let b = k.build_stdin("FROM MyApp\n", &[]);
    assert!(!b.ok());
    assert!(b.stderr().contains("must be lowercase"), "{}", b.stderr());
}

#[test]
fn a_reader_that_goes_away_ends_kiln_quietly() {
    let Some(k) = Kiln::new("closed stdout") else {
        return;
    };
    // `kiln images | head -0`: the read end is closed before kiln writes a byte.
    let mut child = k
        .command()
        .arg("images")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(141), "{stderr}");
    assert!(stderr.is_empty(), "no panic, no message: {stderr}");
}
