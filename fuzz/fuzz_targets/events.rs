//! Arbitrary configs and driver events against the balancer (listeners and pools) and the
//! flow machines; every invariant is checked after every event by `lb_harness`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| lb_harness::fuzz_events(data));
