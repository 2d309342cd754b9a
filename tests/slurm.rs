//! The sharded embedding on a real Slurm: a single-node cluster (Debian's `slurm-wlm` and `munge`, daemons
//! started by hand on loopback with their config in a temp folder) runs `scripts/deploy/slurm/submit.sh` on
//! `datasets/tiny` with 3 shards; the merged store must be byte-identical to a one-process `embed`, also
//! after a task killed half-way is submitted again alone. A plain `cargo test` leaves it out and counts it
//! as ignored; with `--include-ignored` but without Slurm it says so and returns, unless
//! SOUNDALIKE_SLURM=require (set by .ci/run), when it fails.

mod util;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use util::*;

struct Cluster {
    dir: tempfile::TempDir,
    daemons: Vec<Child>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for c in &mut self.daemons {
            let _ = c.kill();
            let _ = c.wait();
        }
        if let Ok(pid) = std::fs::read_to_string(self.dir.path().join("munged.pid")) {
            let _ = Command::new("kill").arg(pid.trim()).status();
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A program's path (the daemons live in /usr/sbin, which an ordinary user's PATH may lack).
fn which(cmd: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    let found = path.split(':').chain(["/usr/sbin", "/usr/bin", "/sbin", "/bin"]).map(|d| Path::new(d).join(cmd)).find(|p| p.is_file());
    found
}

impl Cluster {
    fn conf(&self) -> PathBuf {
        self.dir.path().join("slurm.conf")
    }

    fn cmd(&self, prog: &str) -> Command {
        let mut c = Command::new(which(prog).unwrap_or_else(|| prog.into()));
        c.env("SLURM_CONF", self.conf());
        c
    }

    /// munged, slurmctld and slurmd on loopback; `None` (with a message) when they are not installed.
    fn start() -> Option<Cluster> {
        if !["munged", "slurmctld", "slurmd", "sbatch"].iter().all(|c| which(c).is_some()) {
            let msg = "Slurm test skipped: needs Debian's slurm-wlm and munge (apt-get install slurm-wlm munge)";
            assert!(std::env::var("SOUNDALIKE_SLURM").as_deref() != Ok("require"), "{msg}");
            eprintln!("{msg}");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let key: Vec<u8> = (0..1024u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8 ^ std::process::id() as u8).collect();
        std::fs::write(d.join("munge.key"), key).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(d.join("munge.key"), std::fs::Permissions::from_mode(0o400)).unwrap();
        let sock = d.join("munge.sock");
        let st = Command::new(which("munged").unwrap())
            .args(["--force", "--socket", s(&sock), "--key-file", s(&d.join("munge.key")), "--pid-file", s(&d.join("munged.pid"))])
            .args(["--log-file", s(&d.join("munged.log")), "--seed-file", s(&d.join("munged.seed"))])
            .status()
            .unwrap();
        assert!(st.success(), "munged did not start: {}", std::fs::read_to_string(d.join("munged.log")).unwrap_or_default());
        for sub in ["state", "spool"] {
            std::fs::create_dir_all(d.join(sub)).unwrap();
        }
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        // The daemons run as whoever runs the test (root on CI).
        let user = String::from_utf8_lossy(&Command::new("id").arg("-un").output().unwrap().stdout).trim().to_string();
        let conf = format!(
            "ClusterName=soundalike-test\nSlurmctldHost=localhost(127.0.0.1)\nSlurmctldPort={}\nSlurmdPort={}\nSlurmUser={user}\nSlurmdUser={user}\n\
             AuthType=auth/munge\nAuthInfo=socket={}\nCredType=cred/munge\nStateSaveLocation={}\nSlurmdSpoolDir={}\n\
             SlurmctldPidFile={d}/slurmctld.pid\nSlurmdPidFile={d}/slurmd.pid\nSlurmctldLogFile={d}/slurmctld.log\nSlurmdLogFile={d}/slurmd.log\n\
             ProctrackType=proctrack/linuxproc\nTaskPlugin=task/none\nJobAcctGatherType=jobacct_gather/none\n\
             AccountingStorageType=accounting_storage/none\nJobCompType=jobcomp/none\nSchedulerType=sched/builtin\n\
             SelectType=select/cons_tres\nSelectTypeParameters=CR_Core\nMpiDefault=none\nReturnToService=2\n\
             NodeName=localhost NodeAddr=127.0.0.1 CPUs={cpus} State=UNKNOWN\nPartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP\n",
            free_port(),
            free_port(),
            sock.display(),
            d.join("state").display(),
            d.join("spool").display(),
            d = d.display(),
        );
        std::fs::write(d.join("slurm.conf"), conf).unwrap();
        let mut c = Cluster { dir, daemons: vec![] };
        let ctld = c.cmd("slurmctld").args(["-D", "-i"]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
        c.daemons.push(ctld);
        std::thread::sleep(Duration::from_secs(1));
        let slurmd = c.cmd("slurmd").args(["-D", "-N", "localhost"]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
        c.daemons.push(slurmd);
        let t = Instant::now();
        loop {
            let o = c.cmd("sinfo").args(["-h", "-o", "%t"]).output().unwrap();
            if String::from_utf8_lossy(&o.stdout).trim() == "idle" {
                return Some(c);
            }
            assert!(t.elapsed() < Duration::from_secs(60), "the Slurm node never became idle:\n{}", c.logs());
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    fn logs(&self) -> String {
        ["slurmctld.log", "slurmd.log"].iter().map(|f| std::fs::read_to_string(self.dir.path().join(f)).unwrap_or_default()).collect::<Vec<_>>().join("\n")
    }

    /// Waits until job `id` ends; its final state.
    fn wait(&self, id: &str) -> String {
        let t = Instant::now();
        loop {
            let o = self.cmd("scontrol").args(["show", "job", id]).output().unwrap();
            let text = String::from_utf8_lossy(&o.stdout).into_owned();
            let state = text.split_whitespace().find_map(|w| w.strip_prefix("JobState=")).unwrap_or("").to_string();
            if ["COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY"].contains(&state.as_str()) {
                return state;
            }
            assert!(t.elapsed() < Duration::from_secs(240), "job {id} still {state:?} after 4 minutes:\n{}", self.logs());
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// `sbatch ARGS` from the cluster's folder; the job id.
    fn sbatch(&self, args: &[&str]) -> String {
        let o = self.cmd("sbatch").arg("--parsable").args(args).current_dir(self.dir.path()).env("SOUNDALIKE_BIN", env!("CARGO_BIN_EXE_soundalike")).output().unwrap();
        assert!(o.status.success(), "sbatch {args:?}: {}", stderr(&o));
        stdout(&o).trim().split(';').next().unwrap().to_string()
    }
}

fn same_store(a: &Path, b: &Path) {
    for f in ["songs.jsonl", "store.json"] {
        let (x, y) = (std::fs::read(a.join(f)).unwrap(), std::fs::read(b.join(f)).unwrap());
        assert!(x == y, "{f} differs between {} and {}", a.display(), b.display());
    }
}

#[test]
#[ignore = "needs Slurm and munge (sudo apt-get install slurm-wlm munge; run with --include-ignored)"]
fn sharded_embedding_on_slurm_equals_one_process_and_survives_a_killed_task() {
    let Some(cluster) = Cluster::start() else { return };
    let d = cluster.dir.path();
    let lib = root().join("datasets/tiny");
    let model = root().join("models/default");
    let reference = d.join("reference");
    let o = run(&["embed", s(&lib), "--model", s(&model), "--out", s(&reference), "--index", "false"]);
    assert!(o.status.success(), "{}", stderr(&o));

    // submit.sh: the array of 3 shards and the merge that waits for them.
    let out = d.join("merged");
    let o = cluster
        .cmd("bash")
        .arg(root().join("scripts/deploy/slurm/submit.sh"))
        .args([s(&lib), s(&out), "3", s(&model)])
        .current_dir(d)
        .env("SOUNDALIKE_BIN", env!("CARGO_BIN_EXE_soundalike"))
        .output()
        .unwrap();
    assert!(o.status.success(), "submit.sh: {}", stderr(&o));
    let text = stdout(&o);
    let merge_id = text.split_whitespace().skip_while(|w| *w != "merge").nth(2).unwrap_or_else(|| panic!("no merge job id in {text:?}")).to_string();
    assert_eq!(cluster.wait(&merge_id), "COMPLETED", "{}", cluster.logs());
    same_store(&reference, &out);
    let shards = d.join("merged.shards");
    for k in 0..3 {
        let info: serde_json::Value = serde_json::from_slice(&std::fs::read(shards.join(format!("shard-{k}-of-3/shard.json"))).unwrap()).unwrap();
        assert_eq!((info["shard"].as_u64(), info["of"].as_u64(), info["complete"].as_bool()), (Some(k), Some(3), Some(true)));
    }

    // merge names a missing shard.
    let o = run(&["merge", "--out", s(&d.join("partial")), s(&shards.join("shard-0-of-3")), s(&shards.join("shard-2-of-3"))]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("shard 1 of 3 missing"), "{}", stderr(&o));

    // Task 1 killed half-way: its journal cut in the middle of a line and its marker left unfinished, as
    // `kill -9` leaves them. merge refuses it; submitted again alone, it resumes, and the merge is the same.
    let s1 = shards.join("shard-1-of-3");
    let journal = std::fs::read(s1.join("songs.jsonl")).unwrap();
    std::fs::write(s1.join("songs.jsonl"), &journal[..journal.len() / 2]).unwrap();
    let marker = s1.join("shard.json");
    let mut info: serde_json::Value = serde_json::from_slice(&std::fs::read(&marker).unwrap()).unwrap();
    info["complete"] = false.into();
    std::fs::write(&marker, serde_json::to_vec(&info).unwrap()).unwrap();
    let again = d.join("again");
    let o = run(&["merge", "--out", s(&again), s(&shards.join("shard-0-of-3")), s(&s1), s(&shards.join("shard-2-of-3"))]);
    assert!(!o.status.success() && stderr(&o).contains("did not finish"), "{}", stderr(&o));
    let task = cluster.sbatch(&["--array=1", s(&root().join("scripts/deploy/slurm/embed.sbatch")), s(&lib), s(&shards), "3", s(&model)]);
    let merge = cluster.sbatch(&[&format!("--dependency=afterok:{task}"), s(&root().join("scripts/deploy/slurm/merge.sbatch")), s(&shards), "3", s(&again)]);
    assert_eq!(cluster.wait(&merge), "COMPLETED", "{}", cluster.logs());
    same_store(&reference, &again);
}
