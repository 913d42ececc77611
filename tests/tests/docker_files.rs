//! The files under `docker/`, checked without Docker (no engine or registry on the development
//! machines): the compose file's services, dependencies, healthchecks and mounts, every file
//! its commands use, and the Dockerfile's build command, user and healthcheck against what CI
//! does.

use std::fs;
use std::path::{Path, PathBuf};

use yaml_rust2::{Yaml, YamlLoader};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .expect("the repository root")
}

fn docker_dir() -> PathBuf {
    repo().join("docker")
}

fn compose() -> Yaml {
    let path = docker_dir().join("compose.yml");
    let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut docs = YamlLoader::load_from_str(&text).unwrap_or_else(|e| panic!("compose.yml: {e}"));
    assert_eq!(docs.len(), 1, "compose.yml holds one document");
    docs.remove(0)
}

fn service<'a>(compose: &'a Yaml, name: &str) -> &'a Yaml {
    let service = &compose["services"][name];
    assert!(
        service.as_hash().is_some(),
        "compose.yml has no service {name}"
    );
    service
}

/// A string, or the strings of a list, joined by spaces.
fn text(value: &Yaml) -> String {
    match value {
        Yaml::String(s) => s.clone(),
        Yaml::Array(items) => items.iter().map(text).collect::<Vec<_>>().join(" "),
        Yaml::Integer(i) => i.to_string(),
        _ => String::new(),
    }
}

/// `(host, container)` of a service's bind mounts; named volumes are checked to be declared.
fn bind_mounts(compose: &Yaml, name: &str) -> Vec<(String, String)> {
    let mut mounts = Vec::new();
    for volume in service(compose, name)["volumes"]
        .as_vec()
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        let spec = volume.as_str().expect("short volume syntax");
        let mut parts = spec.split(':');
        let (source, target) = (parts.next().unwrap(), parts.next().expect("a target"));
        if source.starts_with('.') || source.starts_with('/') {
            mounts.push((source.to_owned(), target.to_owned()));
        } else {
            let declared = compose["volumes"]
                .as_hash()
                .is_some_and(|h| h.contains_key(&Yaml::String(source.to_owned())));
            assert!(declared, "{name}: named volume {source} is not declared");
        }
    }
    mounts
}

/// The host file a container path refers to through a bind mount, if it is under one.
fn host_path(mounts: &[(String, String)], container_path: &str) -> Option<PathBuf> {
    mounts.iter().find_map(|(host, target)| {
        let rest = if container_path == target {
            Some("")
        } else {
            container_path
                .strip_prefix(target.as_str())
                .and_then(|r| r.strip_prefix('/'))
        }?;
        let host = docker_dir().join(host);
        Some(if rest.is_empty() {
            host
        } else {
            host.join(rest)
        })
    })
}

/// Absolute paths written in a piece of shell.
fn paths_in(script: &str) -> Vec<String> {
    script
        .split(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '=' | ';'))
        .filter(|t| t.starts_with('/') && t.len() > 1)
        .map(str::to_owned)
        .collect()
}

fn condition(compose: &Yaml, name: &str, dependency: &str) -> String {
    text(&service(compose, name)["depends_on"][dependency]["condition"])
}

#[test]
fn the_services_exist_and_start_in_order() {
    let compose = compose();
    for name in ["postgres", "keyring", "policies", "pgseal", "seed"] {
        service(&compose, name);
    }
    assert!(text(&service(&compose, "postgres")["image"]).starts_with("postgres:15"));
    assert_eq!(condition(&compose, "pgseal", "postgres"), "service_healthy");
    assert_eq!(
        condition(&compose, "pgseal", "keyring"),
        "service_completed_successfully"
    );
    assert_eq!(condition(&compose, "seed", "pgseal"), "service_healthy");
    assert_eq!(condition(&compose, "seed", "postgres"), "service_healthy");
    let ports = text(&service(&compose, "pgseal")["ports"]);
    assert!(ports.split(' ').any(|p| p == "6432:6432"), "{ports}");
}

#[test]
fn healthchecks_probe_postgres_and_pgseal_admin_endpoint() {
    let compose = compose();
    let postgres = text(&service(&compose, "postgres")["healthcheck"]["test"]);
    assert!(postgres.contains("pg_isready"), "{postgres}");
    let pgseal = service(&compose, "pgseal");
    let probe = text(&pgseal["healthcheck"]["test"]);
    assert!(probe.contains("/healthz"), "{probe}");
    let admin = text(&pgseal["environment"]["PGSEAL_ADMIN_LISTEN"]);
    let port = admin.rsplit(':').next().unwrap();
    assert!(
        probe.contains(&format!("127.0.0.1/{port}")),
        "the healthcheck probes port {port}: {probe}"
    );
    // One-shot services have no healthcheck to wait on.
    assert_eq!(
        service(&compose, "keyring")["healthcheck"]["disable"].as_bool(),
        Some(true)
    );
}

#[test]
fn every_mounted_host_path_exists() {
    let compose = compose();
    let services = compose["services"].as_hash().unwrap();
    let mut mounted = 0;
    for name in services.keys().filter_map(Yaml::as_str) {
        for (host, _) in bind_mounts(&compose, name) {
            let path = docker_dir().join(&host);
            assert!(path.exists(), "{name} mounts {host}, which does not exist");
            mounted += 1;
        }
    }
    assert!(mounted >= 2);
}

/// The volumes a service mounts by name: `(volume, container path)`.
fn named_mounts(compose: &Yaml, name: &str) -> Vec<(String, String)> {
    service(compose, name)["volumes"]
        .as_vec()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter_map(|v| {
            let mut parts = v.as_str()?.split(':');
            let (source, target) = (parts.next()?, parts.next()?);
            (!source.starts_with('.') && !source.starts_with('/'))
                .then(|| (source.to_owned(), target.to_owned()))
        })
        .collect()
}

#[test]
fn pgseal_serves_a_policy_per_database_made_and_checked_before_it_starts() {
    let compose = compose();
    let pgseal = service(&compose, "pgseal");
    let policy = text(&pgseal["environment"]["PGSEAL_POLICY"]);
    let served = named_mounts(&compose, "pgseal");
    let (volume, _) = served
        .iter()
        .find(|(_, target)| *target == policy)
        .expect("the policy directory is a volume");
    let written = named_mounts(&compose, "policies");
    assert!(
        written.contains(&(volume.clone(), policy.clone())),
        "{written:?}"
    );
    assert_eq!(
        condition(&compose, "pgseal", "policies"),
        "service_completed_successfully"
    );
    assert_eq!(
        text(&pgseal["environment"]["PGSEAL_UPSTREAM"]),
        "postgres:5432"
    );
    let keyring = text(&pgseal["environment"]["PGSEAL_KEYRING"]);
    let generated = text(&service(&compose, "keyring")["command"]);
    assert!(
        generated.contains(&format!("--out {keyring}")),
        "the keyring service writes {keyring}: {generated}"
    );

    // The policies service's script, run here on the repository's examples: it writes one
    // policy per database and `pgseal policy check` accepts them as a set.
    let script = text(&service(&compose, "policies")["command"]);
    let examples = host_path(&bind_mounts(&compose, "policies"), "/examples").unwrap();
    let out = tempfile::tempdir().unwrap();
    let local = script
        .replace(&policy, out.path().to_str().unwrap())
        .replace("/examples", examples.to_str().unwrap());
    let binary = pgseal_tests::proxy::pgseal_binary();
    let path = format!(
        "{}:{}",
        binary.parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let run = std::process::Command::new("sh")
        .args(["-ec", &local])
        .env("PATH", path)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    // Each names a database the compose file creates and loads with its schema.
    let seed = text(&service(&compose, "seed")["command"]);
    let created = text(&service(&compose, "postgres")["environment"]["POSTGRES_DB"]);
    for (file, database, schema) in [
        ("ehr.toml", created.as_str(), "hospital.sql"),
        ("lab.toml", "lab", "laboratory.sql"),
    ] {
        let written = fs::read_to_string(out.path().join(file)).unwrap();
        assert!(
            written.starts_with(&format!("databases = [\"{database}\"]\n")),
            "{file}"
        );
        assert!(seed.contains(schema), "{seed}");
    }
    assert!(
        seed.contains("CREATE DATABASE lab") && seed.contains("-d lab -f"),
        "{seed}"
    );
}

#[test]
fn the_seed_command_uses_files_of_the_repository_and_writes_through_pgseal() {
    let compose = compose();
    let seed = service(&compose, "seed");
    let mounts = bind_mounts(&compose, "seed");
    let script = format!("{} {}", text(&seed["entrypoint"]), text(&seed["command"]));
    let mut files = 0;
    for path in paths_in(&script) {
        if let Some(host) = host_path(&mounts, &path) {
            assert!(
                host.is_file(),
                "seed uses {path}: {} is missing",
                host.display()
            );
            files += 1;
        }
    }
    assert!(script.contains("hospital.sql"), "{script}");
    assert!(
        files >= 1,
        "the seed command uses no mounted file: {script}"
    );
    assert!(script.contains("pgseal seed"), "{script}");
    assert!(
        script.contains("@pgseal:6432/"),
        "seeding goes through pgseal: {script}"
    );
}

#[test]
fn builds_point_at_the_dockerfile_and_its_stages() {
    let compose = compose();
    let dockerfile = Dockerfile::read();
    for name in ["keyring", "policies", "pgseal", "seed"] {
        let build = &service(&compose, name)["build"];
        let context = docker_dir().join(text(&build["context"]));
        assert!(context.join("Cargo.toml").is_file(), "{name}: context");
        assert!(
            context.join(text(&build["dockerfile"])).is_file(),
            "{name}: dockerfile"
        );
        let target = text(&build["target"]);
        assert!(
            dockerfile.stages.iter().any(|s| s.name == target),
            "{name}: no stage {target}"
        );
    }
}

/// One stage of the Dockerfile: its base and its instructions (continuations joined).
struct Stage {
    from: String,
    name: String,
    instructions: Vec<(String, String)>,
}

struct Dockerfile {
    stages: Vec<Stage>,
}

impl Dockerfile {
    fn read() -> Dockerfile {
        let path = docker_dir().join("Dockerfile");
        let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let mut logical = Vec::new();
        let mut current = String::new();
        for line in text.lines() {
            let trimmed = line.trim();
            if trimmed.starts_with('#') || (trimmed.is_empty() && current.is_empty()) {
                continue;
            }
            match trimmed.strip_suffix('\\') {
                Some(head) => {
                    current.push_str(head);
                    current.push(' ');
                }
                None => {
                    current.push_str(trimmed);
                    logical.push(std::mem::take(&mut current));
                }
            }
        }
        let mut stages: Vec<Stage> = Vec::new();
        for line in logical.iter().filter(|l| !l.is_empty()) {
            let (keyword, rest) = line.split_once(' ').unwrap_or((line, ""));
            let keyword = keyword.to_ascii_uppercase();
            if keyword == "FROM" {
                let words: Vec<&str> = rest.split_whitespace().collect();
                let name = match words.as_slice() {
                    [_, as_, name] if as_.eq_ignore_ascii_case("as") => name.to_string(),
                    _ => String::new(),
                };
                stages.push(Stage {
                    from: words.first().unwrap_or(&"").to_string(),
                    name,
                    instructions: Vec::new(),
                });
            } else {
                let stage = stages.last_mut().expect("an instruction before FROM");
                stage.instructions.push((keyword, rest.trim().to_owned()));
            }
        }
        Dockerfile { stages }
    }

    fn stage(&self, name: &str) -> Option<&Stage> {
        self.stages.iter().find(|s| s.name == name)
    }

    /// The stages from `stage` back to its base image, nearest first.
    fn ancestry<'a>(&'a self, stage: &'a Stage) -> Vec<&'a Stage> {
        let mut chain = vec![stage];
        while let Some(parent) = chain.last().and_then(|s| self.stage(&s.from)) {
            if chain.len() > self.stages.len() {
                panic!("FROM cycle");
            }
            chain.push(parent);
        }
        chain
    }

    /// The last value of `keyword` in effect in `stage` (inherited through its bases).
    fn effective(&self, stage: &Stage, keyword: &str) -> Option<String> {
        self.ancestry(stage).into_iter().find_map(|s| {
            s.instructions
                .iter()
                .rev()
                .find(|(k, _)| k == keyword)
                .map(|(_, v)| v.clone())
        })
    }
}

#[test]
fn the_dockerfile_builds_as_ci_does() {
    let dockerfile = Dockerfile::read();
    let build = dockerfile.stages.first().expect("a build stage");
    assert_eq!(build.from, "rust:1-bookworm");
    let cargo: Vec<&String> = build
        .instructions
        .iter()
        .filter(|(k, v)| k == "RUN" && v.contains("cargo build"))
        .map(|(_, v)| v)
        .collect();
    assert_eq!(cargo.len(), 1, "one cargo build in the build stage");
    assert!(
        cargo[0].contains("cargo build --release --locked -p pgseal"),
        "{}",
        cargo[0]
    );

    // CI runs cargo with the committed lockfile too (--locked); the image must build what CI
    // checked, so a build that would update Cargo.lock fails in both.
    let ci = fs::read_to_string(repo().join(".ci/run")).expect(".ci/run");
    let ci_cargo: Vec<&str> = ci
        .lines()
        .map(str::trim)
        .filter(|l| {
            ["cargo build", "cargo test", "cargo clippy"]
                .iter()
                .any(|c| l.starts_with(c))
        })
        .collect();
    assert!(
        !ci_cargo.is_empty(),
        ".ci/run runs no cargo build, test or clippy"
    );
    for line in ci_cargo {
        assert!(line.contains("--locked"), ".ci/run: {line}");
    }
    let package = fs::read_to_string(repo().join("proxy/Cargo.toml")).unwrap();
    assert!(package.contains("name = \"pgseal\""));
}

#[test]
fn the_image_runs_as_a_non_root_user_with_a_healthcheck() {
    let dockerfile = Dockerfile::read();
    let runtime = dockerfile.stages.last().expect("a final stage");
    let ancestry = dockerfile.ancestry(runtime);
    assert_eq!(
        ancestry.last().unwrap().from,
        "debian:bookworm-slim",
        "the runtime image is slim Debian"
    );
    let user = dockerfile
        .effective(runtime, "USER")
        .expect("a USER in the final stage");
    assert!(
        !["root", "0", "0:0"].contains(&user.as_str()),
        "USER {user}"
    );
    let healthcheck = dockerfile
        .effective(runtime, "HEALTHCHECK")
        .expect("a HEALTHCHECK in the final stage");
    assert!(
        healthcheck.contains("/healthz") && healthcheck.contains("9187"),
        "{healthcheck}"
    );
    let expose = dockerfile.effective(runtime, "EXPOSE").unwrap_or_default();
    assert!(
        expose.split_whitespace().any(|p| p == "6432"),
        "EXPOSE {expose}"
    );
    let env = dockerfile.effective(runtime, "ENV").unwrap_or_default();
    assert!(
        env.contains("PGSEAL_ADMIN_LISTEN=0.0.0.0:9187"),
        "ENV {env}"
    );
    assert!(
        runtime
            .instructions
            .iter()
            .chain(ancestry.iter().flat_map(|s| s.instructions.iter()))
            .any(|(k, v)| k == "COPY" && v.contains("--from=build")),
        "the binary is copied from the build stage"
    );
    // The seeding image runs as pgseal too.
    let seed = dockerfile.stage("seed").expect("a seed stage");
    assert_eq!(
        dockerfile.effective(seed, "USER").as_deref(),
        Some("pgseal")
    );
}

#[test]
fn the_build_context_leaves_build_output_out() {
    let ignore = fs::read_to_string(docker_dir().join("Dockerfile.dockerignore"))
        .expect("docker/Dockerfile.dockerignore");
    assert!(ignore.lines().any(|l| l.trim() == "target/"), "{ignore}");
    assert!(ignore.lines().any(|l| l.trim() == ".git/"), "{ignore}");
}
