//! karmem-runtime serves the drop of a host-defined resource (`HostFunctions::register_drop`):
//! a component lowered under `--abi karmem` that makes a host resource and drops its owned
//! handle reaches the host's drop with the host's own handle number; without a registered
//! drop the import is refused by name.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "test code")]

use std::sync::{Arc, Mutex};

use karmem_format::Value;
use karmem_runtime::invoke::{HostFunctions, Session, SessionOptions};

const COMPONENT: &str = r#"
(component
  (import "host" (instance $host
    (export "resource1" (type $r (sub resource)))
    (export "[constructor]resource1" (func (param "r" u32) (result (own $r))))))
  (alias export $host "resource1" (type $r))
  (alias export $host "[constructor]resource1" (func $ctor))
  (core func $drop (canon resource.drop $r))
  (core func $ctor (canon lower (func $ctor)))
  (core module $m
    (import "" "drop" (func $drop (param i32)))
    (import "" "ctor" (func $ctor (param i32) (result i32)))
    (func (export "f") (call $drop (call $ctor (i32.const 100)))))
  (core instance $i (instantiate $m
    (with "" (instance (export "drop" (func $drop)) (export "ctor" (func $ctor))))))
  (func (export "f") (canon lift (core func $i "f")))
)"#;

fn session(hosts: HostFunctions) -> anyhow::Result<Session> {
    let bytes = wat::parse_str(COMPONENT).unwrap();
    let options = karmem_bridge::LowerOptions { abi: karmem_bridge::lower::Abi::Karmem, ..Default::default() };
    let module = karmem_bridge::lower(&bytes, &options).unwrap().module;
    let runtime = karmem_runtime::Runtime::new(karmem_runtime::RuntimeConfig::default()).unwrap();
    Session::new(&runtime, &module, &SessionOptions { hosts, ..SessionOptions::default() })
}

fn call_f(session: &mut Session) -> anyhow::Result<()> {
    let (interface, function) = session.resolve_function("f")?;
    let layout = &session.abi().unwrap().layout;
    let text = format!("{}()", karmem_format::wave::kebab(&function));
    let parsed = karmem_format::wave::parse_invocation(layout, &interface, &text).map_err(anyhow::Error::msg)?;
    session.invoke(&interface, &parsed.function, &parsed.args).map(|_| ())
}

#[test]
fn the_drop_of_a_host_resource_reaches_the_host() {
    let dropped = Arc::new(Mutex::new(Vec::new()));
    let mut hosts = HostFunctions::default();
    hosts.register(
        "host",
        "resource1_new",
        Arc::new(|args: &Value| {
            assert_eq!(args.field("r"), Some(&Value::U32(100)));
            Ok(Value::Record(vec![("ret".to_owned(), Value::U32(7))]))
        }),
    );
    let seen = Arc::clone(&dropped);
    hosts.register_drop(
        "host",
        "resource1",
        Arc::new(move |handle| {
            seen.lock().unwrap().push(handle);
            Ok(())
        }),
    );
    let mut session = session(hosts).unwrap();
    call_f(&mut session).unwrap();
    assert_eq!(*dropped.lock().unwrap(), vec![7], "the host's handle 7 is dropped once");
}

#[test]
fn an_unserved_host_drop_is_refused_by_name() {
    let mut hosts = HostFunctions::default();
    hosts.register("host", "resource1_new", Arc::new(|_| Ok(Value::Record(vec![("ret".to_owned(), Value::U32(7))]))));
    let error = match session(hosts) {
        Ok(mut session) => call_f(&mut session).expect_err("the drop is not served"),
        Err(error) => error,
    };
    assert!(format!("{error:#}").contains("[resource-drop]resource1"), "{error:#}");
}
