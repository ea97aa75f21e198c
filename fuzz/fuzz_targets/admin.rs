//! Arbitrary bytes sent to the admin endpoint: no panic, well-formed answers, and only a
//! `POST` action changes the balancer.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| lb_harness::fuzz_admin(data));
