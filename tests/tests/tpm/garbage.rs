//! Issue #13, finding 3 for TPM devices: quotes that the bound AK did not sign,
//! sent by someone who only knows the credential id, neither spend the
//! device's answer budget nor enter its history.

use super::{answer, challenge_now, enroll, evidence, failures, flags, register, trust_tpm_root};
use tether_e2e::Server;
use tether_e2e::bench::channel_from;
use tether_e2e::fixtures::{Org, is_allow};
use tether_e2e::swtpm::{EK_ECC, EK_ECC_CERT, Swtpm, tools_missing};
use tether_proto::v1::{self as pb, presence_service_client::PresenceServiceClient};
use tonic::Code;

#[tokio::test]
async fn quotes_the_bound_ak_did_not_sign_neither_hold_up_nor_blame_the_device() {
    if tools_missing("the TPM garbage-answer test") {
        return;
    }
    let tpm = Swtpm::start();
    // The production presence limits (the test kit raises them).
    let server =
        Server::start_with_args(&["--limit-presence-per-device", "2", "--limit-unverified-answers-per-address", "1"]);
    let org = Org::create(&server, "tpm-victim").await;
    trust_tpm_root(&server, &org, &tpm).await;
    let device_id = register(&server, &org, "w-tpm", "").await;
    let token = org.token(&server, &device_id).await;
    tpm.create_ak(EK_ECC, "ak");
    let e = evidence(&tpm, EK_ECC, EK_ECC_CERT, "ak");
    let credential_id = enroll(&server, &tpm, &token, EK_ECC, &e, "ak").await.unwrap().credential_id;
    let challenge = challenge_now(&server, &org, &device_id, &credential_id).await;

    // From another address: a well-formed quote over the right nonce by an AK that was never
    // bound, a genuine quote's message with a made-up signature, and bytes.
    tpm.create_ak(EK_ECC, "other-ak");
    let (other_attest, other_signature, other_pcrs) = tpm.quote("other-ak", &challenge.nonce);
    let (genuine_attest, genuine_signature, genuine_pcrs) = tpm.quote("ak", &challenge.nonce);
    let mut made_up = genuine_signature.clone();
    let last = made_up.len() - 1;
    made_up[last] ^= 0x01;
    let garbage = [
        pb::TpmQuote { attest: other_attest, signature: other_signature, pcrs: other_pcrs },
        pb::TpmQuote { attest: genuine_attest.clone(), signature: made_up, pcrs: genuine_pcrs.clone() },
        pb::TpmQuote { attest: vec![0xff; 64], signature: vec![0x00; 64], pcrs: Vec::new() },
    ];
    let mut attacker = PresenceServiceClient::new(channel_from(&server.url, [127, 0, 0, 2].into()).await.unwrap());
    let mut limited = 0;
    for n in 0..60 {
        let request = pb::AnswerChallengeRequest {
            challenge_id: challenge.challenge_id.clone(),
            tpm_quote: Some(garbage[n % garbage.len()].clone()),
            ..Default::default()
        };
        let status = attacker.answer_challenge(request).await.expect_err("a garbage quote was accepted");
        match status.code() {
            Code::ResourceExhausted => limited += 1,
            Code::PermissionDenied | Code::InvalidArgument => {}
            other => panic!("garbage quote: {other:?} {}", status.message()),
        }
    }
    assert!(limited >= 45, "the sender's budget held back only {limited} of 60 garbage quotes");

    // The device's own quote, well over its budget of 10 answers had the garbage counted.
    let ok = answer(&server, &challenge.challenge_id, (genuine_attest, genuine_signature, genuine_pcrs)).await;
    assert_eq!(ok.unwrap().outcome, pb::PresenceOutcome::Ok as i32);
    let recorded = failures(&server, &org, &device_id).await;
    assert!(recorded.is_empty(), "garbage entered the device's history: {recorded:?}");
    assert!(flags(&server, &org, &device_id).await.is_empty());
    assert!(is_allow(&org.check(&server, "w-tpm", &device_id).await));
}
