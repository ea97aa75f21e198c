//! Arbitrary bytes as config.json: no panic, and whatever is accepted round-trips.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| lb_harness::fuzz_config(data));
