//! Deployment material under `deploy/`, checked offline:
//!
//! * every `deploy/k8s/*.yaml` validates with `kubernetes-validate --strict` (PyPI; bundled schemas,
//!   no cluster, no network) against the newest bundled Kubernetes and against 1.27, the oldest
//!   release with native gRPC probes; then the manifests are checked for what the deployment
//!   relies on (replicas, gRPC probes on 50051, non-root read-only pods, selectors that match,
//!   secret keys that exist, placeholder-only secrets);
//! * `deploy/compose.yaml` and `deploy/otel-collector.yaml` parse as YAML (python3 with PyYAML) and
//!   the compose file runs two tetherd replicas on PostgreSQL 15 with a collector and secrets;
//! * `deploy/Dockerfile` builds the workspace's binaries and runs them as a non-root user.
//!
//! The image itself is not built: that needs a Docker engine. When `kubernetes-validate` or PyYAML
//! is missing, the tests that need them print a NOTICE and return; `.ci/run` installs both.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// The oldest Kubernetes the manifests support: native `grpc` probes are GA from 1.27.
const OLDEST_KUBERNETES: &str = "1.27";
const BINARIES: [&str; 3] = ["tetherd", "tether", "tether-agent"];

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ has a parent").to_path_buf()
}

fn deploy(path: &str) -> PathBuf {
    repo_root().join("deploy").join(path)
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

fn k8s_manifests() -> Vec<PathBuf> {
    let dir = deploy("k8s");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml" || ext == "yml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no manifests in {}", dir.display());
    files
}

fn runs(program: &str, args: &[&str]) -> bool {
    Command::new(program).args(args).output().is_ok_and(|o| o.status.success())
}

fn pyyaml_available() -> bool {
    if runs("python3", &["-c", "import yaml"]) {
        return true;
    }
    eprintln!("NOTICE: python3 with PyYAML is not installed (pip install pyyaml); skipping the YAML checks");
    false
}

/// Every YAML document in `path`, as JSON. Panics (failing the test) when the file does not parse.
fn yaml_documents(path: &Path) -> Vec<Value> {
    const TO_JSON: &str = "import json, sys, yaml\n\
                           with open(sys.argv[1]) as f:\n    docs = [d for d in yaml.safe_load_all(f) if d is not None]\n\
                           print(json.dumps(docs))";
    let output = Command::new("python3").args(["-c", TO_JSON]).arg(path).output().expect("run python3");
    assert!(
        output.status.success(),
        "{} is not valid YAML:\n{}",
        path.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    let Value::Array(docs) = serde_json::from_slice(&output.stdout).expect("python3 printed JSON") else {
        panic!("python3 did not print a list")
    };
    docs
}

fn yaml_document(path: &Path) -> Value {
    let mut docs = yaml_documents(path);
    assert_eq!(docs.len(), 1, "{} should hold exactly one YAML document", path.display());
    docs.remove(0)
}

fn str_at<'a>(value: &'a Value, pointer: &str) -> &'a str {
    value.pointer(pointer).and_then(Value::as_str).unwrap_or_else(|| panic!("{pointer} is not a string in {value:#}"))
}

fn array_at<'a>(value: &'a Value, pointer: &str) -> &'a Vec<Value> {
    value.pointer(pointer).and_then(Value::as_array).unwrap_or_else(|| panic!("{pointer} is not a list in {value:#}"))
}

// ---- Kubernetes -----------------------------------------------------------------------------------

#[test]
fn kubernetes_manifests_validate_in_strict_mode() {
    if !runs("kubernetes-validate", &["--version"]) {
        eprintln!(
            "NOTICE: kubernetes-validate is not installed (pip install kubernetes-validate); \
             skipping the strict validation of deploy/k8s/*.yaml"
        );
        return;
    }
    let files = k8s_manifests();
    for version in [None, Some(OLDEST_KUBERNETES)] {
        let mut command = Command::new("kubernetes-validate");
        command.arg("--strict");
        if let Some(version) = version {
            command.args(["--kubernetes-version", version]);
        }
        let output = command.args(&files).output().expect("run kubernetes-validate");
        let report = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
        assert!(
            output.status.success(),
            "kubernetes-validate --strict (Kubernetes {}) rejected the manifests:\n{report}",
            version.unwrap_or("newest bundled")
        );
        // An object whose kind has no schema would pass with only a warning: refuse it.
        assert!(!report.contains("Couldn't find schema"), "a manifest was not validated:\n{report}");
        // Every document must have been validated (one "passed" line per object).
        assert!(report.matches(" passed for resource ").count() >= files.len(), "unexpected report:\n{report}");
    }
}

/// Kubernetes objects by kind and name.
struct Manifests(Vec<Value>);

impl Manifests {
    fn load() -> Manifests {
        Manifests(k8s_manifests().iter().flat_map(|path| yaml_documents(path)).collect())
    }

    fn all(&self, kind: &str) -> Vec<&Value> {
        self.0.iter().filter(|o| o["kind"] == kind).collect()
    }

    fn one(&self, kind: &str) -> &Value {
        let all = self.all(kind);
        assert_eq!(all.len(), 1, "expected exactly one {kind} in deploy/k8s");
        all[0]
    }
}

fn labels_match(selector: &Value, labels: &Value) -> bool {
    let (Some(selector), Some(labels)) = (selector.as_object(), labels.as_object()) else { return false };
    !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// The pod-level and container-level settings the restricted Pod Security Standard and the
/// image (uid 10001, nothing written outside mounted volumes) need.
fn assert_hardened_pod(what: &str, pod: &Value) {
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{what}: runAsNonRoot");
    assert_eq!(pod["securityContext"]["runAsUser"], 10001, "{what}: runAsUser 10001 (the image's user)");
    assert_eq!(pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault", "{what}: seccomp");
    assert_eq!(pod["automountServiceAccountToken"], false, "{what}: tetherd needs no Kubernetes API token");
    for container in array_at(pod, "/containers") {
        let context = &container["securityContext"];
        assert_eq!(context["readOnlyRootFilesystem"], true, "{what}: readOnlyRootFilesystem");
        assert_eq!(context["allowPrivilegeEscalation"], false, "{what}: allowPrivilegeEscalation");
        assert!(
            array_at(context, "/capabilities/drop").iter().any(|c| c == "ALL"),
            "{what}: capabilities must drop ALL"
        );
        assert!(container["resources"]["requests"].is_object(), "{what}: resource requests");
        assert!(container["resources"]["limits"]["memory"].is_string(), "{what}: a memory limit");
    }
}

/// Every Secret reference of the pod names the `secret` and one of its keys; the pepper file the
/// environment names is a mounted key of it.
fn assert_secret_references(what: &str, pod: &Value, secret: &Value) {
    let name = str_at(secret, "/metadata/name");
    let keys: BTreeSet<&str> =
        secret["stringData"].as_object().expect("Secret.stringData").keys().map(String::as_str).collect();
    let mut mounted_files = BTreeSet::new();
    for volume in array_at(pod, "/volumes") {
        if let Some(source) = volume.get("secret") {
            assert_eq!(source["secretName"], name, "{what}: volume {} names another Secret", volume["name"]);
            let volume_name = str_at(volume, "/name");
            let container = &array_at(pod, "/containers")[0];
            let mount = array_at(container, "/volumeMounts")
                .iter()
                .find(|m| m["name"] == volume_name)
                .unwrap_or_else(|| panic!("{what}: secret volume {volume_name} is not mounted"));
            for item in array_at(source, "/items") {
                let key = str_at(item, "/key");
                assert!(keys.contains(key), "{what}: Secret {name} has no key {key}");
                mounted_files.insert(format!("{}/{}", str_at(mount, "/mountPath"), str_at(item, "/path")));
            }
        }
    }
    let mut env = std::collections::BTreeMap::new();
    for container in array_at(pod, "/containers") {
        for var in array_at(container, "/env") {
            if let Some(reference) = var.pointer("/valueFrom/secretKeyRef") {
                assert_eq!(reference["name"], name, "{what}: {} names another Secret", var["name"]);
                let key = str_at(reference, "/key");
                assert!(keys.contains(key), "{what}: Secret {name} has no key {key}");
            }
            env.insert(str_at(var, "/name").to_owned(), var.clone());
        }
    }
    let database = env.get("TETHER_DATABASE_URL").unwrap_or_else(|| panic!("{what}: TETHER_DATABASE_URL unset"));
    assert_eq!(database.pointer("/valueFrom/secretKeyRef/key").and_then(Value::as_str), Some("database-url"));
    let pepper = env.get("TETHER_API_KEY_PEPPER_FILE").unwrap_or_else(|| panic!("{what}: pepper file unset"));
    let pepper_path = str_at(pepper, "/value");
    assert!(mounted_files.contains(pepper_path), "{what}: {pepper_path} is not a mounted Secret key");
}

#[test]
fn kubernetes_manifests_hold_together() {
    if !pyyaml_available() {
        return;
    }
    let manifests = Manifests::load();
    for object in &manifests.0 {
        if object["kind"] != "Namespace" {
            assert_eq!(object["metadata"]["namespace"], "tether", "{} is outside the tether namespace", object["kind"]);
        }
    }
    manifests.one("Namespace");

    let secret = manifests.one("Secret");
    let data = secret["stringData"].as_object().expect("the Secret uses stringData placeholders");
    for key in ["database-url", "api-key-pepper", "token-signing-key"] {
        let value = data.get(key).and_then(Value::as_str).unwrap_or_else(|| panic!("Secret has no {key}"));
        assert!(value.contains("REPLACE_ME"), "Secret {key} must be a REPLACE_ME placeholder, not a real value");
    }
    assert!(secret.get("data").is_none(), "the Secret must not carry encoded values");

    let deployment = manifests.one("Deployment");
    let replicas = deployment["spec"]["replicas"].as_u64().expect("Deployment.spec.replicas");
    assert!(replicas >= 2, "the Deployment runs {replicas} replica(s); at least 2 are needed");
    let selector = &deployment["spec"]["selector"]["matchLabels"];
    let pod_labels = &deployment["spec"]["template"]["metadata"]["labels"];
    assert!(labels_match(selector, pod_labels), "the Deployment's selector does not match its pods");
    let pod = &deployment["spec"]["template"]["spec"];
    assert_hardened_pod("Deployment", pod);
    assert_secret_references("Deployment", pod, secret);
    let container = &array_at(pod, "/containers")[0];
    assert!(array_at(container, "/ports").iter().any(|p| p["containerPort"] == 50051), "container port 50051");
    for probe in ["startupProbe", "readinessProbe", "livenessProbe"] {
        assert_eq!(container[probe]["grpc"]["port"], 50051, "{probe} must be a native gRPC probe on port 50051");
    }
    let args: Vec<&str> = array_at(container, "/args").iter().filter_map(Value::as_str).collect();
    assert_eq!(args, ["serve", "--listen", "0.0.0.0:50051"], "the Deployment's tetherd arguments");

    let job = manifests.one("Job");
    let job_pod = &job["spec"]["template"]["spec"];
    assert_hardened_pod("Job", job_pod);
    assert_secret_references("Job", job_pod, secret);
    assert_eq!(
        job_pod["containers"][0]["image"], container["image"],
        "the migration Job must run the same image as the Deployment"
    );
    assert!(["Never", "OnFailure"].contains(&str_at(job_pod, "/restartPolicy")), "a Job's restartPolicy");

    let budget = manifests.one("PodDisruptionBudget");
    assert_eq!(budget["spec"]["minAvailable"], 1, "PodDisruptionBudget minAvailable");
    assert_eq!(budget["spec"]["selector"]["matchLabels"], *selector, "the budget covers the Deployment's pods");

    let services = manifests.all("Service");
    let headless = services.iter().filter(|s| s["spec"]["clusterIP"] == "None").count();
    assert_eq!(headless, 1, "one headless Service (clusterIP: None) for client-side load balancing");
    assert!(services.len() >= 2, "a headless and a regular Service");
    for service in services {
        let name = str_at(service, "/metadata/name");
        assert!(labels_match(&service["spec"]["selector"], pod_labels), "Service {name} selects no tetherd pod");
        let ports = array_at(service, "/spec/ports");
        assert!(
            ports.iter().any(|p| p["port"] == 50051 && (p["targetPort"] == "grpc" || p["targetPort"] == 50051)),
            "Service {name} must expose the gRPC port 50051"
        );
    }
}

// ---- Compose --------------------------------------------------------------------------------------

/// A compose service's environment as a map (the file uses the mapping form).
fn environment(service: &Value) -> &serde_json::Map<String, Value> {
    service["environment"].as_object().expect("services use `environment:` as a mapping")
}

#[test]
fn compose_file_runs_two_replicas_on_postgres_with_a_collector() {
    if !pyyaml_available() {
        return;
    }
    let compose = yaml_document(&deploy("compose.yaml"));
    let services = compose["services"].as_object().expect("compose.yaml has services");
    let secrets = compose["secrets"].as_object().expect("compose.yaml declares secrets");

    // tetherd: the image built from deploy/Dockerfile, running `serve`, two replicas in all.
    let tetherd: Vec<(&String, &Value)> = services
        .iter()
        .filter(|(_, s)| {
            s["build"]["dockerfile"] == "deploy/Dockerfile"
                && s["command"].as_array().and_then(|c| c.first()).and_then(Value::as_str) == Some("serve")
        })
        .collect();
    let replicas: u64 = tetherd.iter().map(|(_, s)| s["deploy"]["replicas"].as_u64().unwrap_or(1)).sum();
    assert!(replicas >= 2, "compose.yaml runs {replicas} tetherd replica(s); at least 2 are needed");
    for (name, service) in &tetherd {
        let context = deploy("").join(str_at(service, "/build/context"));
        assert!(context.join("Cargo.toml").exists(), "{name}: the build context must be the workspace root");
        let env = environment(service);
        let endpoint = env.get("OTEL_EXPORTER_OTLP_ENDPOINT").and_then(Value::as_str).unwrap_or_default();
        assert!(endpoint.contains("otel-collector:4317"), "{name}: OTEL_EXPORTER_OTLP_ENDPOINT is {endpoint:?}");
        let granted: BTreeSet<&str> = array_at(service, "/secrets").iter().filter_map(Value::as_str).collect();
        for secret in &granted {
            assert!(secrets.contains_key(*secret), "{name}: secret {secret} is not declared");
        }
        let pepper = env.get("TETHER_API_KEY_PEPPER_FILE").and_then(Value::as_str).unwrap_or_default();
        let pepper_secret = pepper
            .strip_prefix("/run/secrets/")
            .unwrap_or_else(|| panic!("{name}: TETHER_API_KEY_PEPPER_FILE must name a compose secret, not {pepper:?}"));
        assert!(granted.contains(pepper_secret), "{name}: the pepper secret is not granted");
        // tetherd reads the URL from TETHER_DATABASE_URL; the entrypoint fills it from a secret.
        let entrypoint: String =
            array_at(service, "/entrypoint").iter().filter_map(Value::as_str).collect::<Vec<_>>().join(" ");
        let url_secret = granted
            .iter()
            .find(|s| entrypoint.contains(&format!("TETHER_DATABASE_URL=\"$$(cat /run/secrets/{s})\"")))
            .unwrap_or_else(|| panic!("{name}: TETHER_DATABASE_URL is not read from a granted secret"));
        assert_ne!(*url_secret, pepper_secret);
        assert!(entrypoint.contains("exec tetherd"), "{name}: the entrypoint must exec tetherd");
        let depends = service["depends_on"].as_object().expect("depends_on");
        assert_eq!(depends["postgres"]["condition"], "service_healthy", "{name}: wait for a healthy PostgreSQL");
    }

    let postgres = &services["postgres"];
    assert!(str_at(postgres, "/image").starts_with("postgres:15"), "PostgreSQL 15");
    let check: String =
        array_at(postgres, "/healthcheck/test").iter().filter_map(Value::as_str).collect::<Vec<_>>().join(" ");
    assert!(check.contains("pg_isready"), "the PostgreSQL healthcheck uses pg_isready: {check}");
    let password_file = str_at(&postgres["environment"], "/POSTGRES_PASSWORD_FILE");
    assert!(password_file.starts_with("/run/secrets/"), "the PostgreSQL password comes from a secret");

    let collector = services
        .values()
        .find(|s| s["image"].as_str().is_some_and(|i| i.starts_with("otel/opentelemetry-collector")))
        .expect("an OpenTelemetry collector service");
    assert!(
        array_at(collector, "/volumes")
            .iter()
            .any(|v| v.as_str().is_some_and(|v| v.starts_with("./otel-collector.yaml:"))),
        "the collector mounts deploy/otel-collector.yaml"
    );

    // Secret files live in deploy/secrets/ (git-ignored) and deploy/dev-secrets.sh writes each.
    let generator = read(&deploy("dev-secrets.sh"));
    for (name, secret) in secrets {
        let file = str_at(secret, "/file");
        let base = file.strip_prefix("./secrets/").unwrap_or_else(|| panic!("secret {name} lives outside secrets/"));
        assert!(generator.contains(&format!(">{base}")), "deploy/dev-secrets.sh does not write {file}");
    }
    assert!(read(&deploy("secrets/.gitignore")).lines().any(|l| l.trim() == "*"), "deploy/secrets/ is git-ignored");
}

#[test]
fn collector_configuration_wires_every_pipeline() {
    if !pyyaml_available() {
        return;
    }
    let config = yaml_document(&deploy("otel-collector.yaml"));
    assert_eq!(str_at(&config, "/receivers/otlp/protocols/grpc/endpoint"), "0.0.0.0:4317", "OTLP/gRPC on 4317");
    let pipelines = config["service"]["pipelines"].as_object().expect("service.pipelines");
    for signal in ["traces", "metrics"] {
        assert!(pipelines.contains_key(signal), "no {signal} pipeline");
    }
    for (name, pipeline) in pipelines {
        for section in ["receivers", "processors", "exporters"] {
            for component in pipeline[section].as_array().into_iter().flatten() {
                let component = component.as_str().expect("component names are strings");
                assert!(
                    config[section].get(component).is_some(),
                    "pipeline {name} uses {section} {component}, which is not configured"
                );
            }
        }
    }
}

// ---- Dockerfile -----------------------------------------------------------------------------------

/// The Dockerfile's instructions (comments and line continuations resolved), per stage.
fn dockerfile_stages() -> Vec<Vec<String>> {
    let text = read(&deploy("Dockerfile"));
    let mut instructions = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') || (line.is_empty() && current.is_empty()) {
            continue;
        }
        let (body, continued) = match line.strip_suffix('\\') {
            Some(body) => (body.trim_end(), true),
            None => (line, false),
        };
        current.push_str(body);
        current.push(' ');
        if !continued {
            instructions.push(current.trim().to_owned());
            current.clear();
        }
    }
    let mut stages: Vec<Vec<String>> = Vec::new();
    for instruction in instructions {
        if instruction.starts_with("FROM ") {
            stages.push(Vec::new());
        }
        stages.last_mut().expect("the Dockerfile starts with FROM").push(instruction);
    }
    stages
}

/// `[[bin]]`/package names the workspace builds, from `cargo metadata`.
fn workspace_binaries() -> BTreeSet<String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = Command::new(cargo)
        .args(["metadata", "--no-deps", "--format-version", "1", "--offline"])
        .current_dir(repo_root())
        .output()
        .expect("run cargo metadata");
    assert!(output.status.success(), "cargo metadata: {}", String::from_utf8_lossy(&output.stderr));
    let metadata: Value = serde_json::from_slice(&output.stdout).expect("cargo metadata JSON");
    let mut binaries = BTreeSet::new();
    for package in array_at(&metadata, "/packages") {
        for target in array_at(package, "/targets") {
            if array_at(target, "/kind").iter().any(|k| k == "bin") {
                binaries.insert(str_at(target, "/name").to_owned());
            }
        }
    }
    binaries
}

#[test]
fn dockerfile_builds_the_workspace_binaries_and_runs_them_as_non_root() {
    let stages = dockerfile_stages();
    assert!(stages.len() >= 2, "the Dockerfile must be multi-stage");
    let builder = &stages[0];
    let runtime = stages.last().expect("a runtime stage");

    // Builder: the official Rust image, new enough for the workspace's rust-version.
    let from = &builder[0];
    assert!(from.starts_with("FROM rust:") && from.ends_with(" AS builder"), "builder stage: {from}");
    let image_version: Vec<u32> = from["FROM rust:".len()..]
        .split(['-', ' '])
        .next()
        .unwrap_or_default()
        .split('.')
        .map(|p| p.parse().expect("rust:MAJOR.MINOR tag"))
        .collect();
    let manifest = read(&repo_root().join("Cargo.toml"));
    let rust_version: Vec<u32> = manifest
        .lines()
        .find_map(|l| l.strip_prefix("rust-version = "))
        .expect("workspace rust-version")
        .trim_matches('"')
        .split('.')
        .map(|p| p.parse().expect("rust-version number"))
        .collect();
    assert!(image_version >= rust_version, "rust:{image_version:?} is older than rust-version {rust_version:?}");

    // It builds the shipped binaries from the whole locked workspace, with no feature flags, so
    // they are the binaries the tests build.
    let build = builder
        .iter()
        .find(|i| i.starts_with("RUN ") && i.contains("cargo build"))
        .expect("the builder runs cargo build");
    for flag in ["--release", "--locked", "--workspace"] {
        assert!(build.contains(flag), "cargo build without {flag}: {build}");
    }
    assert!(!build.contains("--features") && !build.contains("-features"), "no feature flags: {build}");
    let workspace = workspace_binaries();
    for binary in BINARIES {
        assert!(workspace.contains(binary), "{binary} is not a binary of this workspace ({workspace:?})");
        assert!(build.contains(&format!("--bin {binary}")), "the image does not build {binary}");
    }
    assert!(builder.iter().any(|i| i == "COPY . ."), "the builder copies the whole workspace");

    // Runtime: slim Debian, a non-root user, only the binaries, the gRPC port, tetherd serve.
    assert_eq!(runtime[0], "FROM debian:bookworm-slim AS runtime");
    let user = runtime.iter().rev().find_map(|i| i.strip_prefix("USER ")).expect("the runtime stage sets USER");
    let uid = user.split(':').next().unwrap_or_default();
    assert!(!["root", "0"].contains(&uid), "the runtime user must not be root: {user}");
    assert_eq!(uid, "10001");
    assert!(runtime.iter().any(|i| i.contains("useradd") && i.contains("--uid 10001")), "a uid 10001 account");
    assert!(runtime.iter().any(|i| i.contains("ca-certificates")), "ca-certificates");
    let copies: Vec<&String> = runtime.iter().filter(|i| i.starts_with("COPY")).collect();
    assert_eq!(copies.len(), 1, "the runtime stage copies only the binaries: {copies:?}");
    for binary in BINARIES {
        assert!(copies[0].contains(&format!("/{binary} ")), "the runtime image lacks {binary}");
    }
    assert!(copies[0].starts_with("COPY --from=builder "));
    assert!(runtime.iter().any(|i| i == "EXPOSE 50051"));
    assert!(runtime.iter().any(|i| i == r#"ENTRYPOINT ["tetherd"]"#));
    assert!(runtime.iter().any(|i| i == r#"CMD ["serve", "--listen", "0.0.0.0:50051"]"#));

    // Build artifacts and secrets stay out of the build context.
    let ignore = read(&deploy("Dockerfile.dockerignore"));
    for pattern in ["target", ".git", "deploy/secrets"] {
        assert!(ignore.lines().any(|l| l.trim() == pattern), "Dockerfile.dockerignore must exclude {pattern}");
    }
}
