//! Two split points, then a client's first bytes on an `sni` listener: the ClientHello
//! reader never panics and never takes back an answer, and a flow reading the bytes in
//! pieces routes them as the whole bytes say.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| lb_harness::fuzz_client_hello(data));
