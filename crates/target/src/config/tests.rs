//! Whole-file tests: every error path with its exact message (file:line:column, key, text),
//! round trips, the embedded default, the documented example, and command-line overrides.

use std::path::PathBuf;

use super::*;

/// A minimal valid file; tests edit it to introduce one fault each.
const BASE: &str = r#"[[portal]]
listen = ["127.0.0.1:3260"]

[[target]]
name = "iqn.2026-11.io.rtgt:t1"

[[target.lun]]
number = 0
backend = "memory:1GiB"
"#;

const EXAMPLE: &str = include_str!("../../../../docs/rtgtd.example.toml");

fn parse(text: &str) -> Config {
    match Config::from_toml_str(text, "rtgtd.toml") {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    }
}

fn err(text: &str) -> String {
    Config::from_toml_str(text, "rtgtd.toml")
        .expect_err("the configuration should be rejected")
        .to_string()
}

fn with_session(lines: &str) -> String {
    format!("{BASE}\n[session]\n{lines}\n")
}

fn backend(b: &str) -> String {
    BASE.replace("\"memory:1GiB\"", b)
}

// ----- the base, the default, the example ------------------------------------------------

#[test]
fn base_parses_with_defaults() {
    let c = parse(BASE);
    assert_eq!(c.portals[0].group, 1);
    assert_eq!(c.portals[0].transport, Transport::Tcp);
    assert_eq!(c.targets[0].acl, Acl::Any);
    assert_eq!(c.targets[0].luns[0].block_size, 512);
    assert_eq!(c.session, SessionDefaults::default());
    assert_eq!(c.performance, PerformanceConfig::default());
    assert_eq!(c.log, LogConfig::default());
    assert!(!c.discovery.auth.required());
}

#[test]
fn embedded_default_is_what_rtgtd_serves_without_arguments() {
    let c = Config::embedded_default();
    assert_eq!(c.targets.len(), 1);
    let t = &c.targets[0];
    assert_eq!(t.name, IscsiName::parse(DEFAULT_TARGET_NAME).unwrap());
    assert_eq!(t.luns.len(), 1);
    assert_eq!(t.luns[0].number, 0);
    assert_eq!(
        t.luns[0].backend,
        Backend::Memory {
            size: ByteSize::gib(1)
        }
    );
    assert_eq!(c.portals.len(), 1);
    assert_eq!(
        c.portals[0].listen,
        vec![ListenAddr::parse("127.0.0.1:3260").unwrap()]
    );
    assert_eq!(t.acl, Acl::Any);
    assert!(!t.auth.required());
    assert!(c.validate(Capabilities::default()).is_ok());
    let again = Config::embedded_default_with(Capabilities::default(), &Overrides::default());
    assert_eq!(again.unwrap(), c);
}

#[test]
fn example_file_parses_with_its_documented_values() {
    let c = Config::from_toml_str(EXAMPLE, "docs/rtgtd.example.toml").unwrap();

    assert_eq!(c.portals.len(), 2);
    let listen: Vec<String> = c.portals[0]
        .listen
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(listen, ["0.0.0.0:3260", "[::1]:3260"]);
    assert_eq!(
        (c.portals[1].group, c.portals[1].transport),
        (2, Transport::Tcp)
    );

    let s = &c.session;
    assert_eq!(s.max_recv_data_segment_length, ByteSize::kib(256));
    assert_eq!(s.max_burst_length, ByteSize::mib(1));
    assert_eq!(s.first_burst_length, ByteSize::kib(256));
    assert!(s.immediate_data && !s.initial_r2t);
    assert_eq!((s.max_outstanding_r2t, s.max_connections), (1, 4));
    assert_eq!(s.header_digest, [Digest::None, Digest::Crc32c]);
    assert_eq!(s.default_time2retain, HumanDuration::from_secs(20));
    assert_eq!(s.nop_timeout, HumanDuration::from_secs(30));
    assert_eq!(s.queue_depth, 128);

    let d = &c.discovery.auth;
    assert!(d.required());
    assert_eq!(
        d.algorithms,
        [
            ChapAlgorithm::Sha256,
            ChapAlgorithm::Sha1,
            ChapAlgorithm::Md5
        ]
    );
    assert_eq!(
        d.secret_for("discover").map(Secret::as_bytes),
        Some(&b"discovery-secret-42"[..])
    );

    let t = &c.targets[0];
    assert_eq!(t.name.as_str(), "iqn.2026-11.io.rtgt:storage.disk1");
    assert_eq!(t.alias.as_deref(), Some("primary storage"));
    assert_eq!(t.portal_groups, [1]);
    assert!(t.acl.allows("iqn.1991-05.com.microsoft:backup-host"));
    assert!(!t.acl.allows("iqn.1991-05.com.microsoft:other"));
    assert_eq!(t.auth.users.len(), 2);
    assert_eq!(
        t.auth.mutual.as_ref().map(|m| m.name.as_str()),
        Some("rtgt-disk1")
    );
    assert_eq!(c.portals_for(t).map(|p| p.group).collect::<Vec<_>>(), [1]);

    assert_eq!(t.luns.len(), 3);
    assert_eq!(
        t.luns[0].backend,
        Backend::Memory {
            size: ByteSize::gib(1)
        }
    );
    let l1 = &t.luns[1];
    assert_eq!(l1.block_size, 4096);
    assert_eq!(l1.serial.as_deref(), Some("RTGT-DISK1-0001"));
    assert_eq!(l1.naa.as_ref().map(|n| n.as_bytes().len()), Some(16));
    assert!(l1.thin_provisioning);
    assert_eq!(l1.rotational, Some(true));
    assert_eq!(l1.optimal_granularity, Some(ByteSize::kib(256)));
    assert_eq!(
        l1.backend,
        Backend::File(FileBackend {
            path: PathBuf::from("/var/lib/rtgt/disk1.img"),
            size: Some(ByteSize::gib(10)),
            direct: true,
            write_cache: WriteCache::Writeback,
            read_only: false,
        })
    );
    assert_eq!(l1.streams.read_ahead, Toggle::Auto);
    assert_eq!(l1.streams.read_ahead_size, ByteSize::mib(4));
    assert_eq!(l1.streams.cache_size, ByteSize::mib(256));
    assert_eq!(l1.streams.write_combine, Toggle::On);
    assert_eq!(
        l1.streams.write_combine_window,
        HumanDuration::from_millis(2)
    );
    assert_eq!(l1.streams.max_streams, 64);
    assert_eq!(
        t.luns[2].backend,
        Backend::Null {
            size: ByteSize::new(2 << 40)
        }
    );

    let t2 = &c.targets[1];
    assert_eq!(t2.acl, Acl::Any);
    assert_eq!(c.portals_for(t2).map(|p| p.group).collect::<Vec<_>>(), [2]);
    assert_eq!(
        t2.luns[0].backend,
        Backend::Block(DeviceBackend {
            device: PathBuf::from("/dev/disk/by-id/nvme-example"),
            direct: true,
            write_cache: WriteCache::Writethrough,
            read_only: true,
        })
    );

    assert_eq!(c.performance.reactors, Some(2));
    assert_eq!(c.performance.numa_node, Some(0));
    assert_eq!(
        c.performance
            .cpus
            .as_ref()
            .map(ToString::to_string)
            .as_deref(),
        Some("0-1")
    );
    assert_eq!(c.performance.irq_policy, IrqPolicy::Separate);
    assert_eq!(c.performance.huge_pages, HugePages::Auto);
    assert_eq!(
        c.log,
        LogConfig {
            level: LogLevel::Info,
            format: LogFormat::Text
        }
    );
}

// ----- round trips ------------------------------------------------------------------------

fn round_trip(c: &Config) {
    let text = c.to_toml_string().unwrap();
    let back = Config::from_toml_str(&text, "round-trip.toml")
        .unwrap_or_else(|e| panic!("{e}\n---\n{text}"));
    assert_eq!(&back, c, "{text}");
}

#[test]
fn embedded_default_round_trips() {
    round_trip(&Config::embedded_default());
}

#[test]
fn example_round_trips() {
    round_trip(&parse(EXAMPLE));
}

#[test]
fn edited_configuration_round_trips() {
    let mut c = parse(EXAMPLE);
    c.targets[0]
        .luns
        .push(LunSpec::parse("file:/srv/x.img,ro").unwrap().into_lun(9));
    c.session.nop_interval = HumanDuration::from_secs(0);
    c.session.default_time2wait = HumanDuration::from_secs(0);
    c.log.format = LogFormat::Json;
    round_trip(&c);
}

// ----- TOML syntax -----------------------------------------------------------------------

#[test]
fn syntax_error_names_line_and_column() {
    assert_eq!(
        err("[[portal]\nlisten = []\n"),
        "rtgtd.toml:1:9: invalid table header; expected `.`, `]]`"
    );
}

#[test]
fn syntax_error_inside_a_table_names_the_key() {
    assert_eq!(
        err(&format!("{BASE}block_size = 4 KiB\n")),
        "rtgtd.toml:10:16: target[0].lun[0].block_size: expected newline, `#`"
    );
}

#[test]
fn duplicate_key_is_a_syntax_error() {
    assert_eq!(
        err("[[portal]]\nlisten = [\"127.0.0.1:3260\"]\nlisten = []\n"),
        "rtgtd.toml:3:1: duplicate key `listen` in table `portal`"
    );
}

// ----- schema: unknown keys, types, formats ------------------------------------------------

#[test]
fn unknown_section_is_rejected() {
    assert_eq!(
        err(&format!("{BASE}\n[sesion]\n")),
        "rtgtd.toml:11:2: sesion: unknown field `sesion`, expected one of `portal`, `target`, `session`, `discovery`, `performance`, `log`"
    );
}

#[test]
fn unknown_lun_key_is_rejected() {
    assert_eq!(
        err(&format!("{BASE}sise = 1\n")),
        "rtgtd.toml:10:1: target[0].lun[0].sise: unknown field `sise`, expected one of `number`, `backend`, `block_size`, `serial`, `naa`, `thin_provisioning`, `rotational`, `optimal_granularity`, `streams`"
    );
}

#[test]
fn unknown_backend_key_is_rejected() {
    assert_eq!(
        err(&backend(
            "{ kind = \"memory\", size = \"1GiB\", colour = 1 }"
        )),
        "rtgtd.toml:9:45: target[0].lun[0].backend.colour: unknown field `colour`, expected one of `kind`, `size`, `path`, `device`, `direct`, `write_cache`, `read_only`"
    );
}

#[test]
fn wrong_type_names_the_key() {
    assert_eq!(
        err(&BASE.replace("number = 0", "number = \"zero\"")),
        "rtgtd.toml:8:10: target[0].lun[0].number: invalid type: string \"zero\", expected u16"
    );
}

#[test]
fn missing_required_key_names_the_table() {
    assert_eq!(
        err(&BASE.replace("number = 0\n", "")),
        "rtgtd.toml:7:1: target[0].lun[0]: missing field `number`"
    );
}

#[test]
fn bad_size_in_backend_table() {
    assert_eq!(
        err(&backend("{ kind = \"memory\", size = \"1 GiB\" }")),
        "rtgtd.toml:9:37: target[0].lun[0].backend.size: \"1 GiB\" is not a size (try 1GiB)"
    );
}

#[test]
fn bad_size_in_backend_spec() {
    assert_eq!(
        err(&backend("\"memory:1.5GiB\"")),
        "rtgtd.toml:9:11: target[0].lun[0].backend: \"1.5GiB\" is not a size (sizes are whole numbers with an optional unit: 4096, 64KiB, 512MiB, 1GiB, 1G)"
    );
}

#[test]
fn file_backend_without_path() {
    assert_eq!(
        err(&backend("{ kind = \"file\", size = \"1GiB\" }")),
        "rtgtd.toml:9:11: target[0].lun[0].backend: a file backend needs `path`"
    );
}

#[test]
fn backend_key_that_does_not_apply() {
    assert_eq!(
        err(&backend(
            "{ kind = \"memory\", size = \"1GiB\", path = \"/x\" }"
        )),
        "rtgtd.toml:9:11: target[0].lun[0].backend: `path` does not apply to a memory backend (it takes: size)"
    );
}

#[test]
fn backend_kind_missing_or_unknown() {
    assert_eq!(
        err(&backend("{ size = \"1GiB\" }")),
        "rtgtd.toml:9:11: target[0].lun[0].backend: missing field `kind`"
    );
    assert_eq!(
        err(&backend("{ kind = \"tape\" }")),
        "rtgtd.toml:9:20: target[0].lun[0].backend.kind: unknown variant `tape`, expected one of `memory`, `file`, `block`, `null`"
    );
    assert_eq!(
        err(&backend("1")),
        "rtgtd.toml:9:11: target[0].lun[0].backend: invalid type: integer `1`, expected a backend table ({ kind = \"memory\", size = \"1GiB\" }) or spec (\"memory:1GiB\")"
    );
}

#[test]
fn backend_as_a_header_table() {
    let text = BASE.replace(
        "backend = \"memory:1GiB\"\n",
        "[target.lun.backend]\nkind = \"block\"\nsize = \"1GiB\"\n",
    );
    assert_eq!(
        err(&text),
        "rtgtd.toml:9:1: target[0].lun[0].backend: `size` does not apply to a block backend (it takes: device, direct, write_cache, read_only)"
    );
}

#[test]
fn bad_target_name() {
    assert_eq!(
        err(&BASE.replace("iqn.2026-11.io.rtgt:t1", "iqn.2026-11.IO.rtgt:t1")),
        "rtgtd.toml:5:8: target[0].name: \"iqn.2026-11.IO.rtgt:t1\" is not a valid iSCSI name: contains the upper-case 'I'; iSCSI names are lower case (try iqn.2026-11.io.rtgt:t1)"
    );
    assert_eq!(
        err(&BASE.replace("iqn.2026-11.io.rtgt:t1", "eui.1234")),
        "rtgtd.toml:5:8: target[0].name: \"eui.1234\" is not a valid iSCSI name: an eui. name is eui. followed by 16 hex digits"
    );
}

#[test]
fn bad_listen_address() {
    assert_eq!(
        err(&BASE.replace("127.0.0.1:3260", "localhost:3260")),
        "rtgtd.toml:2:11: portal[0].listen[0]: \"localhost:3260\" is not an IP address and port (e.g. 0.0.0.0:3260, 127.0.0.1:3260, [::1]:3260; host names are not resolved)"
    );
}

#[test]
fn ipv6_listen_addresses() {
    let c = parse(&BASE.replace("\"127.0.0.1:3260\"", "\"[::1]:3260\", \"[::]:3261\""));
    assert_eq!(c.portals[0].listen[0].to_string(), "[::1]:3260");
    assert!(c.portals[0].listen[1].is_wildcard());
}

#[test]
fn acl_string_other_than_any() {
    assert_eq!(
        err(&BASE.replace("t1\"", "t1\"\nacl = \"nobody\"")),
        "rtgtd.toml:6:7: target[0].acl: \"nobody\" is neither \"any\" nor a list; write acl = [\"nobody\"] to allow one initiator"
    );
}

#[test]
fn acl_with_a_bad_initiator_name() {
    assert_eq!(
        err(&BASE.replace(
            "t1\"",
            "t1\"\nacl = [\"iqn.1993-08.org.debian:01:ab\", \"bad name\"]"
        )),
        "rtgtd.toml:6:40: target[0].acl[1]: \"bad name\" is not a valid iSCSI name: an iSCSI name starts with iqn., eui. or naa."
    );
}

#[test]
fn unknown_digest() {
    assert_eq!(
        err(&with_session("header_digest = [\"none\", \"md5\"]")),
        "rtgtd.toml:12:26: session.header_digest[1]: unknown variant `md5`, expected one of `None`, `none`, `CRC32C`, `crc32c`"
    );
}

#[test]
fn duration_without_unit() {
    assert_eq!(
        err(&with_session("nop_interval = 5")),
        "rtgtd.toml:12:16: session.nop_interval: 5 is not a duration: add a unit, e.g. \"5s\" or \"5ms\""
    );
    assert_eq!(
        err(&with_session("nop_timeout = \"5 s\"")),
        "rtgtd.toml:12:15: session.nop_timeout: \"5 s\" is not a duration (try 5s)"
    );
}

#[test]
fn negative_size() {
    assert_eq!(
        err(&with_session("max_burst_length = -1")),
        "rtgtd.toml:12:20: session.max_burst_length: -1 is not a size (sizes cannot be negative)"
    );
}

#[test]
fn unknown_log_level() {
    assert_eq!(
        err(&format!("{BASE}\n[log]\nlevel = \"loud\"\n")),
        "rtgtd.toml:12:9: log.level: unknown variant `loud`, expected one of `error`, `warn`, `info`, `debug`, `trace`"
    );
}

#[test]
fn bad_cpu_list() {
    assert_eq!(
        err(&format!("{BASE}\n[performance]\ncpus = \"3-1\"\n")),
        "rtgtd.toml:12:8: performance.cpus: range \"3-1\" runs backwards"
    );
}

#[test]
fn bad_naa() {
    assert_eq!(
        err(&format!("{BASE}naa = \"1234\"\n")),
        "rtgtd.toml:10:7: target[0].lun[0].naa: \"1234\" is not an NAA identifier: give 16 or 32 hex digits"
    );
}

// ----- semantic validation ---------------------------------------------------------------

#[test]
fn empty_file() {
    assert_eq!(
        err(""),
        "rtgtd.toml:1:1: portal: no [[portal]]: add one, e.g. [[portal]] listen = [\"0.0.0.0:3260\"]"
    );
}

#[test]
fn no_targets() {
    assert_eq!(
        err("[[portal]]\nlisten = [\"127.0.0.1:3260\"]\n"),
        "rtgtd.toml:1:1: target: no [[target]]: add one with a name and at least one [[target.lun]]"
    );
}

#[test]
fn target_without_luns() {
    assert_eq!(
        err(
            "[[portal]]\nlisten = [\"127.0.0.1:3260\"]\n[[target]]\nname = \"iqn.2026-11.io.rtgt:t1\"\n"
        ),
        "rtgtd.toml:3:1: target[0]: target iqn.2026-11.io.rtgt:t1 has no LUNs: add a [[target.lun]]"
    );
}

#[test]
fn duplicate_lun_numbers() {
    assert_eq!(
        err(&format!(
            "{BASE}\n[[target.lun]]\nnumber = 0\nbackend = \"null:1GiB\"\n"
        )),
        "rtgtd.toml:12:10: target[0].lun[1].number: LUN 0 is already defined at lun[0]"
    );
}

#[test]
fn lun_number_out_of_range() {
    assert_eq!(
        err(&BASE.replace("number = 0", "number = 16384")),
        "rtgtd.toml:8:10: target[0].lun[0].number: 16384 is outside 0..=16383 (SAM-5 flat LUN space)"
    );
}

#[test]
fn missing_lun_zero_is_fine() {
    let c = parse(&BASE.replace("number = 0", "number = 5"));
    assert!(c.targets[0].lun(0).is_none());
    assert!(c.targets[0].lun(5).is_some());
}

#[test]
fn duplicate_target_names() {
    let text = format!(
        "{BASE}\n[[target]]\nname = \"iqn.2026-11.io.rtgt:t1\"\n[[target.lun]]\nnumber = 0\nbackend = \"null:1GiB\"\n"
    );
    assert_eq!(
        err(&text),
        "rtgtd.toml:12:8: target[1].name: target iqn.2026-11.io.rtgt:t1 is already defined at target[0]"
    );
}

#[test]
fn two_luns_on_one_file() {
    let text = format!(
        "{}\n[[target]]\nname = \"iqn.2026-11.io.rtgt:t2\"\n[[target.lun]]\nnumber = 0\nbackend = {{ kind = \"file\", path = \"/srv/a.img\" }}\n",
        backend("\"file:/srv/a.img\"")
    );
    assert_eq!(
        err(&text),
        "rtgtd.toml:15:35: target[1].lun[0].backend.path: /srv/a.img is already the storage of target[0].lun[0]"
    );
}

#[test]
fn size_not_a_multiple_of_the_block_size() {
    assert_eq!(
        err(&format!(
            "{}block_size = 4096\n",
            backend("\"memory:6KiB\"")
        )),
        "rtgtd.toml:9:11: target[0].lun[0].backend.size: 6KiB is not a positive multiple of the block size 4096"
    );
}

#[test]
fn bad_block_size() {
    assert_eq!(
        err(&format!("{BASE}block_size = 1024\n")),
        "rtgtd.toml:10:14: target[0].lun[0].block_size: 1024 is not 512 or 4096"
    );
}

#[test]
fn first_burst_larger_than_max_burst() {
    assert_eq!(
        err(&with_session(
            "max_burst_length = \"64KiB\"\nfirst_burst_length = \"128KiB\""
        )),
        "rtgtd.toml:13:22: session.first_burst_length: 128KiB is larger than max_burst_length 64KiB (RFC 7143 §13.14: FirstBurstLength must not exceed MaxBurstLength)"
    );
    // Left at its default (256KiB), the error points at the [session] table.
    assert_eq!(
        err(&with_session("max_burst_length = \"64KiB\"")),
        "rtgtd.toml:11:1: session.first_burst_length: 256KiB is larger than max_burst_length 64KiB (RFC 7143 §13.14: FirstBurstLength must not exceed MaxBurstLength)"
    );
}

#[test]
fn session_value_out_of_rfc_range() {
    assert_eq!(
        err(&with_session("max_recv_data_segment_length = 256")),
        "rtgtd.toml:12:32: session.max_recv_data_segment_length: 256 is outside 512..=16777215 bytes (RFC 7143 §13.12)"
    );
    assert_eq!(
        err(&with_session("default_time2wait = \"1h1s\"")),
        "rtgtd.toml:12:21: session.default_time2wait: \"1h1s\" has an unknown unit \"h1s\" (use ms, s, m or h)"
    );
    assert_eq!(
        err(&with_session("default_time2wait = \"2h\"")),
        "rtgtd.toml:12:21: session.default_time2wait: 7200s is more than 3600s (RFC 7143 §13.15)"
    );
}

#[test]
fn error_recovery_level_beyond_the_engine() {
    let text = with_session("error_recovery_level = 2");
    assert_eq!(
        err(&text),
        "rtgtd.toml:12:24: session.error_recovery_level: 2 is not supported by this build of rtgtd (highest: 0)"
    );
    let caps = Capabilities {
        max_error_recovery_level: 2,
        ..Capabilities::default()
    };
    assert!(Config::from_toml_str_with(&text, "rtgtd.toml", caps, &Overrides::default()).is_ok());
}

#[test]
fn iser_needs_engine_support() {
    let text = BASE.replace("3260\"]", "3260\"]\ntransport = \"iser\"");
    assert_eq!(
        err(&text),
        "rtgtd.toml:3:13: portal[0].transport: iser is not supported by this build of rtgtd (no RDMA support); use tcp"
    );
    let caps = Capabilities {
        iser: true,
        ..Capabilities::default()
    };
    let c = Config::from_toml_str_with(&text, "rtgtd.toml", caps, &Overrides::default()).unwrap();
    assert_eq!(c.portals[0].transport, Transport::Iser);
}

#[test]
fn unknown_portal_group() {
    assert_eq!(
        err(&BASE.replace("t1\"", "t1\"\nportal_groups = [1, 7]")),
        "rtgtd.toml:6:21: target[0].portal_groups[1]: no [[portal]] has group = 7 (groups: 1)"
    );
}

#[test]
fn overlapping_listen_addresses() {
    assert_eq!(
        err(&BASE.replace("\"127.0.0.1:3260\"", "\"0.0.0.0:3260\", \"127.0.0.1:3260\"")),
        "rtgtd.toml:2:27: portal[0].listen[1]: 127.0.0.1:3260 overlaps 0.0.0.0:3260 at portal[0].listen[0]: a wildcard address already covers that port"
    );
}

#[test]
fn short_chap_secret_is_rejected_unless_allowed() {
    let text = format!("{BASE}\n[[target.auth.user]]\nname = \"alice\"\nsecret = \"tooshort\"\n");
    assert_eq!(
        err(&text),
        "rtgtd.toml:13:10: target[0].auth.user[0].secret: is 8 bytes; RFC 7143 §9.2.1 asks for at least 12 (set allow_short_secret = true to accept it anyway)"
    );
    let allowed = format!(
        "{BASE}\n[target.auth]\nallow_short_secret = true\n[[target.auth.user]]\nname = \"alice\"\nsecret = \"tooshort\"\n"
    );
    let c = parse(&allowed);
    assert!(c.targets[0].auth.required());
}

#[test]
fn mutual_secret_equal_to_a_user_secret() {
    let text = format!(
        "{BASE}\n[[target.auth.user]]\nname = \"alice\"\nsecret = \"same-secret-123\"\n[target.auth.mutual]\nname = \"tgt\"\nsecret = \"same-secret-123\"\n"
    );
    assert_eq!(
        err(&text),
        "rtgtd.toml:16:10: target[0].auth.mutual.secret: is the same as user \"alice\"'s secret; RFC 7143 §9.2.1 forbids using one secret in both directions"
    );
}

#[test]
fn discovery_auth_is_checked_too() {
    let text = format!("{BASE}\n[[discovery.auth.user]]\nname = \"d\"\nsecret = \"x\"\n");
    assert_eq!(
        err(&text),
        "rtgtd.toml:13:10: discovery.auth.user[0].secret: is 1 bytes; RFC 7143 §9.2.1 asks for at least 12 (set allow_short_secret = true to accept it anyway)"
    );
}

#[test]
fn performance_ranges_come_from_rtgt_affinity() {
    assert_eq!(
        err(&format!("{BASE}\n[performance]\nbuffer_size = 1000\n")),
        "rtgtd.toml:12:15: performance.buffer_size: 1000 must be a multiple of 4096 bytes between 4096 and 16777216"
    );
    assert_eq!(
        err(&format!("{BASE}\n[performance]\npoll_us = 20000\n")),
        "rtgtd.toml:12:11: performance.poll_us: 20000 is more than 10000 microseconds (a reactor polls only briefly before it sleeps; 0 turns polling off)"
    );
}

#[test]
fn unreadable_file() {
    let e = Config::load("/nonexistent/rtgtd.toml").unwrap_err();
    assert!(matches!(e, ConfigError::Read { .. }));
    assert_eq!(
        e.to_string(),
        "/nonexistent/rtgtd.toml: cannot read the configuration: No such file or directory (os error 2)"
    );
}

#[test]
fn load_reads_a_file() {
    let dir = std::env::temp_dir().join(format!("rtgt-config-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("rtgtd.toml");
    std::fs::write(&path, BASE.replace("number = 0", "number = 99999")).unwrap();
    let e = Config::load(&path).unwrap_err().to_string();
    assert_eq!(
        e,
        format!(
            "{}:8:10: target[0].lun[0].number: invalid value: integer `99999`, expected u16",
            path.display()
        )
    );
    std::fs::write(&path, BASE).unwrap();
    assert_eq!(Config::load(&path).unwrap(), parse(BASE));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn validate_without_a_file_names_the_key() {
    let mut c = Config::embedded_default();
    c.session.queue_depth = 0;
    assert_eq!(
        c.validate(Capabilities::default()).unwrap_err().to_string(),
        "session.queue_depth: 0 is outside 1..=16384"
    );
}

// ----- command-line overrides ------------------------------------------------------------

fn ov(listen: &[&str], target: Option<&str>, luns: &[&str]) -> Overrides {
    Overrides {
        listen: listen.iter().map(ToString::to_string).collect(),
        target: target.map(ToString::to_string),
        luns: luns.iter().map(ToString::to_string).collect(),
        portals: Vec::new(),
    }
}

fn override_err(o: &Overrides) -> String {
    Config::embedded_default_with(Capabilities::default(), o)
        .unwrap_err()
        .to_string()
}

#[test]
fn overrides_replace_portals_target_and_luns() {
    let o = ov(
        &["0.0.0.0:3260", "[::1]:3260"],
        Some("iqn.2026-11.io.rtgt:bench"),
        &["null:1TiB", "file:/tmp/rtgt.img,size=64MiB,direct"],
    );
    assert!(!o.is_empty());
    let c = Config::embedded_default_with(Capabilities::default(), &o).unwrap();
    assert_eq!(c.portals.len(), 1);
    assert_eq!(c.portals[0].listen.len(), 2);
    assert_eq!(c.targets[0].name.as_str(), "iqn.2026-11.io.rtgt:bench");
    let numbers: Vec<u16> = c.targets[0].luns.iter().map(|l| l.number).collect();
    assert_eq!(numbers, [0, 1]);
    assert_eq!(
        c.targets[0].luns[0].backend,
        Backend::Null {
            size: ByteSize::new(1 << 40)
        }
    );
    let Backend::File(f) = &c.targets[0].luns[1].backend else {
        panic!("{:?}", c.targets[0].luns[1].backend)
    };
    assert!(f.direct);
    assert_eq!(f.size, Some(ByteSize::mib(64)));
}

#[test]
fn overrides_apply_on_top_of_a_file() {
    let o = ov(&["127.0.0.1:3299"], None, &["memory:8MiB"]);
    let c = Config::from_toml_str_with(
        &BASE.replace("t1\"", "t1\"\nportal_groups = [1]"),
        "rtgtd.toml",
        Capabilities::default(),
        &o,
    )
    .unwrap();
    assert_eq!(c.portals[0].listen[0].addr().port(), 3299);
    assert!(c.targets[0].portal_groups.is_empty());
    assert_eq!(c.targets[0].name.as_str(), "iqn.2026-11.io.rtgt:t1");
    assert_eq!(
        c.targets[0].luns[0].backend,
        Backend::Memory {
            size: ByteSize::mib(8)
        }
    );
    // The file's own mistakes are still reported at their line.
    let e = Config::from_toml_str_with(
        &with_session("queue_depth = 0"),
        "rtgtd.toml",
        Capabilities::default(),
        &o,
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "rtgtd.toml:12:15: session.queue_depth: 0 is outside 1..=16384"
    );
}

#[test]
fn target_override_creates_a_target_when_the_file_has_none() {
    let file = "[[portal]]\nlisten = [\"127.0.0.1:3260\"]\n";
    let o = ov(&[], Some("iqn.2026-11.io.rtgt:new"), &["memory:1GiB"]);
    let c = Config::from_toml_str_with(file, "f.toml", Capabilities::default(), &o).unwrap();
    assert_eq!(c.targets.len(), 1);
    assert_eq!(c.targets[0].name.as_str(), "iqn.2026-11.io.rtgt:new");
    let o = ov(&[], Some("iqn.2026-11.io.rtgt:new"), &[]);
    assert_eq!(
        Config::from_toml_str_with(file, "f.toml", Capabilities::default(), &o)
            .unwrap_err()
            .to_string(),
        "--target: the configuration has no [[target]], so --target creates one; give it LUNs with --lun SPEC"
    );
    let o = ov(&[], None, &["memory:1GiB"]);
    assert_eq!(
        Config::from_toml_str_with(file, "f.toml", Capabilities::default(), &o)
            .unwrap_err()
            .to_string(),
        "--lun: there is no target to attach LUNs to; add --target IQN"
    );
}

#[test]
fn override_errors_name_the_flag() {
    assert_eq!(
        override_err(&ov(&["localhost"], None, &[])),
        "--listen: \"localhost\" is not an IP address and port (e.g. 0.0.0.0:3260, 127.0.0.1:3260, [::1]:3260; host names are not resolved)"
    );
    assert_eq!(
        override_err(&ov(&["127.0.0.1:3260", "127.0.0.1:3260"], None, &[])),
        "--listen: 127.0.0.1:3260 is given twice"
    );
    assert_eq!(
        override_err(&ov(&["0.0.0.0:3260", "10.0.0.1:3260"], None, &[])),
        "--listen: 10.0.0.1:3260 overlaps 0.0.0.0:3260 (a wildcard address already covers that port)"
    );
    assert_eq!(
        override_err(&ov(&[], Some("disk1"), &[])),
        "--target: \"disk1\": an iSCSI name starts with iqn., eui. or naa."
    );
    assert_eq!(
        override_err(&ov(&[], None, &["memory:1 GiB"])),
        "--lun: \"memory:1 GiB\": \"1 GiB\" is not a size (try 1GiB)"
    );
    assert_eq!(
        override_err(&ov(&[], None, &["memory:1000"])),
        "--lun: \"memory:1000\": size 1000 is not a positive multiple of 512 bytes"
    );
    assert_eq!(
        override_err(&ov(&[], None, &["file:/a.img", "file:/a.img,direct"])),
        "--lun: \"file:/a.img,direct\" uses the same storage as \"file:/a.img\""
    );
}

#[test]
fn target_and_lun_overrides_need_a_single_target() {
    let two = format!(
        "{BASE}\n[[target]]\nname = \"iqn.2026-11.io.rtgt:t2\"\n[[target.lun]]\nnumber = 0\nbackend = \"null:1GiB\"\n"
    );
    let load = |o: &Overrides| {
        Config::from_toml_str_with(&two, "rtgtd.toml", Capabilities::default(), o)
            .unwrap_err()
            .to_string()
    };
    assert_eq!(
        load(&ov(&[], Some("iqn.2026-11.io.rtgt:x"), &[])),
        "--target: the configuration defines 2 targets; --target can only rename a single one"
    );
    assert_eq!(
        load(&ov(&[], None, &["null:1GiB"])),
        "--lun: the configuration defines 2 targets; --lun needs exactly one"
    );
    // --listen alone is fine with many targets.
    let c = Config::from_toml_str_with(
        &two,
        "rtgtd.toml",
        Capabilities::default(),
        &ov(&["127.0.0.1:3300"], None, &[]),
    )
    .unwrap();
    assert_eq!(c.targets.len(), 2);
}

#[test]
fn validation_errors_under_an_overridden_key_name_the_flag() {
    let touched = [(KeyPath::root().key("target").index(0).key("lun"), "--lun")];
    let inv = Invalid::new(
        KeyPath::root()
            .key("target")
            .index(0)
            .key("lun")
            .index(2)
            .key("number"),
        "bad",
    );
    assert_eq!(
        blame_flag(inv, &touched).unwrap().to_string(),
        "--lun: target[0].lun[2].number: bad"
    );
    let inv = Invalid::new(KeyPath::root().key("session"), "bad");
    assert!(blame_flag(inv, &touched).is_err());
}

#[test]
fn redacted_copy_hides_every_secret() {
    let c = parse(EXAMPLE);
    let text = c.redacted().to_toml_string().unwrap();
    for secret in [
        "discovery-secret-42",
        "initiator-secret-1",
        "initiator-secret-2",
        "target-secret-0001",
    ] {
        assert!(c.to_toml_string().unwrap().contains(secret));
        assert!(!text.contains(secret), "{secret} leaked");
    }
    assert_eq!(text.matches("(redacted)").count(), 4);
}

#[test]
fn toml_examples_in_the_documentation_are_valid() {
    let doc = include_str!("../../../../docs/configuration.md");
    let mut count = 0;
    for block in doc.split("```toml\n").skip(1) {
        let text = block.split("```").next().unwrap_or_default();
        if let Err(e) = Config::from_toml_str(text, "configuration.md") {
            panic!("{e}\n---\n{text}");
        }
        count += 1;
    }
    assert_eq!(count, 2);
}

#[test]
fn config_lookups() {
    let c = parse(EXAMPLE);
    assert!(c.target("iqn.2026-11.io.rtgt:scratch").is_some());
    assert!(c.target("IQN.2026-11.IO.RTGT:SCRATCH").is_some());
    assert!(c.target("iqn.2026-11.io.rtgt:nope").is_none());
}
