//! Tests of the `--format` entry points. The expected strings are what Docker CLI 28.2
//! printed for the same data (images imported as `busybox:latest` and
//! `registry.example.com/team/app:v1.2.3`, volumes with UTF-8 labels) against a private
//! dockerd; where docker/cli's current source differs from 28.2, the source is followed
//! and the test says so.

use serde_json::{Value, json};

use super::*;

fn image(repo: &str, tag: &str, since: &str) -> Value {
    json!({
        "Containers": "N/A",
        "CreatedAt": "2026-12-07 19:15:25 +0000 UTC",
        "CreatedSince": since,
        "Digest": "<none>",
        "ID": "c546a2649f8f",
        "Repository": repo,
        "SharedSize": "N/A",
        "Size": "3B",
        "Tag": tag,
        "UniqueSize": "N/A",
    })
}

fn images() -> Vec<Value> {
    vec![
        image("busybox", "latest", "Less than a second ago"),
        image(
            "registry.example.com/team/app",
            "v1.2.3",
            "Less than a second ago",
        ),
    ]
}

fn rows(format: &str, listing: &Listing, rows: &[Value]) -> String {
    render_rows(Some(format), listing, rows).unwrap_or_else(|e| format!("error: {e}"))
}

#[test]
fn images_default_table_keeps_size_in_line_after_less_than_a_second_ago() {
    let want = "\
REPOSITORY                      TAG       IMAGE ID       CREATED                  SIZE
busybox                         latest    c546a2649f8f   Less than a second ago   3B
registry.example.com/team/app   v1.2.3    c546a2649f8f   Less than a second ago   3B
";
    assert_eq!(render_rows(None, &IMAGES, &images()).unwrap(), want);
    assert_eq!(rows("table", &IMAGES, &images()), want);
    assert_eq!(rows("", &IMAGES, &images()), want);
    // An image without a creation time shows N/A, as the default format says.
    let undated = [image("busybox", "latest", "")];
    assert_eq!(
        rows("table", &IMAGES, &undated),
        "REPOSITORY   TAG       IMAGE ID       CREATED   SIZE\n\
         busybox      latest    c546a2649f8f   N/A       3B\n"
    );
}

#[test]
fn custom_table_headers_come_from_the_placeholders() {
    assert_eq!(
        rows(
            "table {{.Repository}}:{{.Tag}}\\t{{.ID}}\\t{{.Size}}",
            &IMAGES,
            &images()
        ),
        "\
REPOSITORY:TAG                         IMAGE ID       SIZE
busybox:latest                         c546a2649f8f   3B
registry.example.com/team/app:v1.2.3   c546a2649f8f   3B
"
    );
    // Header functions return the column name unchanged, except `pad`.
    assert_eq!(
        rows(
            r#"table {{upper .Repository}}\t{{.Tag | lower}}\t{{printf "%s!" .ID}}\t{{pad .Size 2 0}}"#,
            &IMAGES,
            &images()
        ),
        "\
REPOSITORY                      TAG       IMAGE ID!         SIZE
BUSYBOX                         latest    c546a2649f8f!     3B
REGISTRY.EXAMPLE.COM/TEAM/APP   v1.2.3    c546a2649f8f!     3B
"
    );
    assert_eq!(
        rows(
            r#"table {{.Repository}}\t{{if eq .Tag "latest"}}newest{{else}}{{.Tag}}{{end}}"#,
            &IMAGES,
            &images()
        ),
        "\
REPOSITORY                      TAG
busybox                         newest
registry.example.com/team/app   v1.2.3
"
    );
    // A newline inside a row makes more lines; "tablex" is a table whose template is "x ...".
    assert_eq!(
        rows("table {{println .ID}}{{.Tag}}", &IMAGES, &images()),
        "IMAGE ID\nTAG\nc546a2649f8f\nlatest\nc546a2649f8f\nv1.2.3\n"
    );
    assert_eq!(
        rows("tablex {{.ID}}", &IMAGES, &images()),
        "x IMAGE ID\nx c546a2649f8f\nx c546a2649f8f\n"
    );
    // A field missing from the header map heads its column "<no value>" (seen with no rows).
    assert_eq!(
        rows("table {{.ID}}\\t{{.Nope}}", &IMAGES, &[]),
        "IMAGE ID   <no value>\n"
    );
}

#[test]
fn non_table_formats_print_one_line_per_row_without_alignment() {
    assert_eq!(
        rows("{{.Repository}}\\t{{.Tag}}", &IMAGES, &images()),
        "busybox\tlatest\nregistry.example.com/team/app\tv1.2.3\n"
    );
    assert_eq!(
        rows("{{.Tag}}\\n", &IMAGES, &images()),
        "latest\n\nv1.2.3\n\n"
    );
    assert_eq!(
        rows("  {{- .ID -}}  ,", &IMAGES, &images()),
        "c546a2649f8f,\nc546a2649f8f,\n"
    );
    assert_eq!(
        rows("{{- /* c */ -}} {{.Tag}}", &IMAGES, &images()),
        "latest\nv1.2.3\n"
    );
    assert_eq!(
        rows(r#"{{.Repository | printf "%-32s|"}}"#, &IMAGES, &images()),
        "busybox                         |\nregistry.example.com/team/app   |\n"
    );
    assert_eq!(
        rows(
            r#"{{title "hello wORLD"}} {{split .Repository "/"}} {{len (split .Repository "/")}}"#,
            &IMAGES,
            &images()
        ),
        "Hello WORLD [busybox] 1\nHello WORLD [registry.example.com team app] 3\n"
    );
    assert_eq!(
        rows("{{.ID | json}}|{{json .Digest}}", &IMAGES, &images()[..1]),
        "\"c546a2649f8f\"|\"<none>\"\n"
    );
    assert_eq!(
        rows("{{with .Digest}}[{{.}}]{{end}}", &IMAGES, &images()[..1]),
        "[<none>]\n"
    );
    assert_eq!(
        rows("{{$x := .Tag}}{{$x}}-{{len $}}", &IMAGES, &images()[..1]),
        "error: template parsing error: template: :1:23: executing \"\" at <len $>: error calling len: len of type formatter.imageContext"
    );
}

#[test]
fn json_prints_one_sorted_html_escaped_object_per_row() {
    let mut row = json!({"Tag": "latest", "Digest": "<none>", "ID": "c546a2649f8f"});
    row["Label"] = json!({"a": "b"});
    assert_eq!(
        rows("json", &IMAGES, &[row.clone(), row.clone()]),
        "{\"Digest\":\"\\u003cnone\\u003e\",\"ID\":\"c546a2649f8f\",\"Tag\":\"latest\"}\n"
            .repeat(2)
    );
    assert_eq!(rows("json", &IMAGES, &[]), "");
    // The same as `{{json .}}`; a table of it has an empty header (its error is ignored).
    let line = "{\"Digest\":\"\\u003cnone\\u003e\",\"ID\":\"c546a2649f8f\",\"Tag\":\"latest\"}\n";
    assert_eq!(rows("{{json .}}", &IMAGES, &[row.clone()]), line);
    assert_eq!(
        rows("table {{json .}}", &IMAGES, &[row]),
        format!("\n{line}")
    );
}

#[test]
fn empty_tables_print_the_header_alone() {
    assert_eq!(
        render_rows(None, &CONTAINERS, &[]).unwrap(),
        "CONTAINER ID   IMAGE     COMMAND   CREATED   STATUS    PORTS     NAMES\n"
    );
    assert_eq!(
        render_rows(None, &VOLUMES, &[]).unwrap(),
        "DRIVER    VOLUME NAME\n"
    );
    assert_eq!(rows("table {{.Name}}", &VOLUMES, &[]), "VOLUME NAME\n");
    assert_eq!(rows("{{.Name}}", &VOLUMES, &[]), "");
}

fn volume(name: &str, labels: &str, label: Value) -> Value {
    json!({
        "Availability": "N/A", "Driver": "local", "Group": "N/A", "Labels": labels,
        "Links": "N/A", "Mountpoint": format!("/var/lib/kiln/volumes/{name}/_data"),
        "Name": name, "Scope": "local", "Size": "N/A", "Status": "N/A", "Label": label,
    })
}

#[test]
fn utf8_cells_are_measured_by_display_width() {
    let volumes = [
        volume("v2", "ünïcödé=ñ", json!({"ünïcödé": "ñ"})),
        volume(
            "vol1",
            "com.example.some-label=x,名前=値",
            json!({"com.example.some-label": "x", "名前": "値"}),
        ),
    ];
    assert_eq!(
        rows(
            "table {{.Name}}\\t{{.Labels}}\\t{{.Driver}}",
            &VOLUMES,
            &volumes
        ),
        "\
VOLUME NAME   LABELS                             DRIVER
v2            ünïcödé=ñ                          local
vol1          com.example.some-label=x,名前=値   local
"
    );
    // `.Label "key"` reads a label; its header is the key's last dotted part, `-` and `_`
    // made spaces.
    assert_eq!(
        rows(
            r#"table {{.Name}}\t{{.Label "名前"}}\t{{.Label "com.example.some-label"}}\t{{.Scope}}"#,
            &VOLUMES,
            &volumes
        ),
        "\
VOLUME NAME   名前      some label   SCOPE
v2                                   local
vol1          値        x            local
"
    );
    // `Label` is a method with an argument, so JSON leaves it out.
    assert_eq!(
        rows("json", &VOLUMES, &volumes[..1]),
        "{\"Availability\":\"N/A\",\"Driver\":\"local\",\"Group\":\"N/A\",\"Labels\":\"ünïcödé=ñ\",\"Links\":\"N/A\",\"Mountpoint\":\"/var/lib/kiln/volumes/v2/_data\",\"Name\":\"v2\",\"Scope\":\"local\",\"Size\":\"N/A\",\"Status\":\"N/A\"}\n"
    );
}

#[test]
fn row_template_errors_read_as_dockers() {
    let err = |format: &str| match render_rows(Some(format), &IMAGES, &images()) {
        Ok(out) => format!("ok: {out}"),
        Err(e) => e.to_string(),
    };
    assert_eq!(
        err("{{.Foo}}"),
        "template parsing error: template: :1:2: executing \"\" at <.Foo>: can't evaluate field Foo in type *formatter.imageContext"
    );
    assert_eq!(
        err("table {{.ID}}\\t{{.Foo}}"),
        "template parsing error: template: :1:10: executing \"\" at <.Foo>: can't evaluate field Foo in type *formatter.imageContext"
    );
    assert_eq!(
        err("{{if .Nope}}x{{end}}"),
        "template parsing error: template: :1:5: executing \"\" at <.Nope>: can't evaluate field Nope in type *formatter.imageContext"
    );
    assert_eq!(
        err("{{.Repository"),
        "template parsing error: template: :1: unclosed action"
    );
    assert_eq!(
        err("{{nosuch .ID}}"),
        "template parsing error: template: :1: function \"nosuch\" not defined"
    );
    // `\n` becomes a real newline before parsing, even inside a string.
    assert_eq!(
        err(r#"{{"a\nb"}}"#),
        "template parsing error: template: :1: unterminated quoted string"
    );
    assert_eq!(
        err("{{upper}}"),
        "template parsing error: template: :1:2: executing \"\" at <upper>: wrong number of args for upper: want 1 got 0"
    );
    assert_eq!(
        err("{{.ID \"x\"}}"),
        "template parsing error: template: :1:2: executing \"\" at <.ID>: wrong number of args for ID: want 0 got 1"
    );
    assert_eq!(
        err("{{index .ID 100}}"),
        "template parsing error: template: :1:2: executing \"\" at <index .ID 100>: error calling index: index out of range: 100"
    );
    // docker/cli's current `join` takes any value (28.2 wanted a []string).
    assert_eq!(
        err(r#"{{join .Repository ","}}"#),
        "template parsing error: template: :1:2: executing \"\" at <join .Repository \",\">: error calling join: expected slice, got string"
    );
    assert_eq!(
        err("{{upper 3}}"),
        "template parsing error: template: :1:8: executing \"\" at <3>: expected string; found 3"
    );
    let label = |format| rows(format, &VOLUMES, &[volume("v", "", json!({}))]);
    assert_eq!(
        label("{{.Label}}"),
        "error: template parsing error: template: :1:2: executing \"\" at <.Label>: wrong number of args for Label: want 1 got 0"
    );
    assert_eq!(
        label("{{.Label 3}}"),
        "error: template parsing error: template: :1:9: executing \"\" at <3>: expected string; found 3"
    );
    assert!(err("{{range .}}{{end}}").starts_with(
        "template parsing error: template: :1:8: executing \"\" at <.>: range can't iterate over "
    ));
}

fn inspected() -> Value {
    json!({
        "Id": "sha256:c546a2649f8f36ad1a648cc786fb0919725480a5006127f7e0d3f1e6447f6627",
        "RepoTags": ["busybox:latest", "registry.example.com/team/app:v1.2.3"],
        "Size": 3,
        "Os": "linux",
        "Config": {"Env": null, "Cmd": null, "Labels": null, "Entrypoint": null, "Shell": "a<b"},
        "GraphDriver": {"Data": {}, "Name": "vfs"},
        "RootFS": {
            "Type": "layers",
            "Layers": ["sha256:da8e99021901ceee3efbf9816caa7f304000aeeb0ad9f86b5e224a892a719b78"],
        },
    })
}

fn inspect(format: &str) -> String {
    match render_inspect(Some(format), &[inspected()]) {
        Ok(Inspected { output, errors }) if errors.is_empty() => output,
        Ok(Inspected { output, errors }) => {
            let errors: Vec<String> = errors.iter().map(ToString::to_string).collect();
            format!("{output}{}", errors.join("\n"))
        }
        Err(e) => format!("parse: {e}"),
    }
}

#[test]
fn inspect_templates_run_over_the_json() {
    assert_eq!(
        inspect("{{range .RepoTags}}{{.}} {{end}}"),
        "busybox:latest registry.example.com/team/app:v1.2.3 \n"
    );
    assert_eq!(
        inspect(r#"{{join .RepoTags ","}}"#),
        "busybox:latest,registry.example.com/team/app:v1.2.3\n"
    );
    assert_eq!(
        inspect("{{json .RootFS}}"),
        "{\"Type\":\"layers\",\"Layers\":[\"sha256:da8e99021901ceee3efbf9816caa7f304000aeeb0ad9f86b5e224a892a719b78\"]}\n"
    );
    assert_eq!(
        inspect("{{.RootFS.Layers}}"),
        "[sha256:da8e99021901ceee3efbf9816caa7f304000aeeb0ad9f86b5e224a892a719b78]\n"
    );
    assert_eq!(
        inspect("{{(index .RepoTags 0) | upper}}"),
        "BUSYBOX:LATEST\n"
    );
    assert_eq!(inspect(r#"{{if eq .Os "linux"}}L{{else}}O{{end}}"#), "L\n");
    assert_eq!(
        inspect("{{range $k, $v := .GraphDriver.Data}}{{$k}}={{$v}};{{end}}"),
        "\n"
    );
    assert_eq!(inspect("{{.GraphDriver.Data}}"), "map[]\n");
    // A label looked up in a nil map is empty, as in Docker's typed struct; `json` of null.
    assert_eq!(
        inspect(r#"{{index .Config.Labels "x"}}|{{json .Config.Env}}"#),
        "|null\n"
    );
    // `json` does not escape HTML; the whole-object forms do, as the daemon's JSON does.
    assert_eq!(inspect("{{json .Config.Shell}}"), "\"a<b\"\n");
    assert_eq!(inspect("{{.Size}} {{len .RepoTags}}"), "3 2\n");
    assert_eq!(
        inspect(
            "{{range 3}}{{.}}{{end}} {{range $i, $t := .RepoTags}}{{if $i}}{{break}}{{end}}{{$i}}={{$t}}{{end}} {{range .Config.Env}}x{{else}}none{{end}}"
        ),
        "012 0=busybox:latest none\n"
    );
}

#[test]
fn inspect_errors_read_as_dockers() {
    let missing = "\ntemplate parsing error: template: :1:2: executing \"\" at <.Foo>: map has no entry for key \"Foo\"";
    assert_eq!(inspect("{{.Foo}}"), missing);
    assert_eq!(
        inspect("{{.Config.Nope}}"),
        "\ntemplate parsing error: template: :1:9: executing \"\" at <.Config.Nope>: map has no entry for key \"Nope\""
    );
    assert_eq!(
        inspect("{{.NoSuch.Deeper}}"),
        "\ntemplate parsing error: template: :1:9: executing \"\" at <.NoSuch.Deeper>: map has no entry for key \"NoSuch\""
    );
    assert_eq!(
        inspect("{{len .RepoTags}} {{index .RepoTags 5}}"),
        "\ntemplate parsing error: template: :1:20: executing \"\" at <index .RepoTags 5>: error calling index: index out of range: 5"
    );
    assert_eq!(
        inspect("{{upper .Size}}"),
        "\ntemplate parsing error: template: :1:8: executing \"\" at <.Size>: wrong type for value; expected string; got json.Number"
    );
    assert_eq!(
        inspect("{{.RepoTags"),
        "parse: template parsing error: template: :1: unclosed action"
    );
    // A failing object is left out; the others are printed.
    let mut other = inspected();
    other["Foo"] = json!("bar");
    let out = render_inspect(Some("{{.Foo}}"), &[inspected(), other]).unwrap();
    assert_eq!(out.output, "bar\n");
    assert_eq!(out.errors.len(), 1);
    assert_eq!(
        render_one("{{.Foo}}", &inspected())
            .unwrap_err()
            .to_string(),
        &missing[1..]
    );
    assert_eq!(render_one("{{.Os}}", &inspected()).unwrap(), "linux\n");
}

#[test]
fn inspect_without_template_prints_the_json_array() {
    let item = json!({"Id": "x", "Tags": ["a<b"], "Empty": {}, "Null": null});
    assert_eq!(
        render_inspect(None, std::slice::from_ref(&item))
            .unwrap()
            .output,
        "[\n    {\n        \"Id\": \"x\",\n        \"Tags\": [\n            \"a\\u003cb\"\n        ],\n        \"Empty\": {},\n        \"Null\": null\n    }\n]\n"
    );
    assert_eq!(
        render_inspect(Some("json"), &[item]).unwrap().output,
        "[{\"Id\":\"x\",\"Tags\":[\"a\\u003cb\"],\"Empty\":{},\"Null\":null}]\n"
    );
    assert_eq!(render_inspect(None, &[]).unwrap().output, "[]\n");
}

#[test]
fn ps_prechecks_its_format_and_reports_the_fields_used() {
    assert_eq!(
        precheck("table {{.Names}}\\t{{.Foo}}", &CONTAINERS)
            .unwrap_err()
            .to_string(),
        "failed to execute template: template: :1:20: executing \"\" at <.Foo>: can't evaluate field Foo in type *formatter.ContainerContext"
    );
    assert_eq!(
        precheck("{{.Names", &CONTAINERS).unwrap_err().to_string(),
        "failed to parse template: template: :1: unclosed action"
    );
    let used = precheck(
        r#"{{.ID}} {{.Label "a"}} {{if .Size}}{{.Size}}{{end}}"#,
        &CONTAINERS,
    )
    .unwrap();
    assert!(used.contains(&"Size".to_string()), "{used:?}");
    assert!(
        !precheck("{{.ID}}", &CONTAINERS)
            .unwrap()
            .contains(&"Size".to_string())
    );
}

#[test]
fn no_format_makes_the_renderer_panic() {
    // Formats built from the characters templates are made of, by a fixed pseudo-random
    // sequence: every one must give output or an error.
    const PIECES: &[&str] = &[
        "{{",
        "}}",
        "{{- ",
        " -}}",
        ".",
        ".ID",
        ".Label",
        "$",
        "$x",
        ":=",
        "=",
        "|",
        "(",
        ")",
        "\"a\"",
        "`b`",
        "'c'",
        "1",
        "-2",
        "0x1f",
        "1.5",
        "if",
        "else",
        "end",
        "range",
        "with",
        "break",
        "continue",
        "index",
        "slice",
        "printf",
        "\"%d %s %v %5.2f %q %x\"",
        "json",
        "join",
        "len",
        "eq",
        "lt",
        "and",
        "or",
        "not",
        "print",
        "nil",
        "true",
        ",",
        " ",
        "\\t",
        "\\n",
        "table ",
        "/*",
        "*/",
        "é",
        "名",
        "{",
        "}",
        "\t",
        "\n",
        "pad",
        "truncate",
        "split",
    ];
    let row = image("busybox", "latest", "1 second ago");
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    for _ in 0..20_000 {
        let mut format = String::new();
        for _ in 0..1 + state % 12 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            format.push_str(PIECES[(state % PIECES.len() as u64) as usize]);
        }
        let _ = render_rows(Some(&format), &IMAGES, std::slice::from_ref(&row));
        let _ = render_inspect(Some(&format), &[inspected()]);
    }
}
