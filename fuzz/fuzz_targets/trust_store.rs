#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tether_fuzz::x509::trust_store(data));
