//! No-panic loops: seeded pseudo-random and mutated messages through every entry point.

use super::*;

/// xorshift64*: a small deterministic generator, so failures are reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// Random bytes, biased towards the characters SCRAM and PLAIN parse on.
    fn bytes(&mut self) -> Vec<u8> {
        const INTERESTING: &[u8] = b",=\0nyparcisvmx2C3D@/ ";
        let len = match self.below(20) {
            0 => MAX_MESSAGE - 2 + self.below(5),
            _ => self.below(64),
        };
        (0..len)
            .map(|_| {
                if self.below(2) == 0 {
                    INTERESTING[self.below(INTERESTING.len())]
                } else {
                    self.next() as u8
                }
            })
            .collect()
    }

    /// `seed` with a few random byte edits, cuts or insertions.
    fn mutate(&mut self, seed: &[u8]) -> Vec<u8> {
        let mut m = seed.to_vec();
        for _ in 0..=self.below(3) {
            let at = self.below(m.len() + 1);
            match self.below(4) {
                0 if at < m.len() => m[at] = self.next() as u8,
                1 => m.truncate(at),
                2 => m.insert(at, b",=\0"[self.below(3)]),
                _ => {
                    if at < m.len() {
                        m.remove(at);
                    }
                }
            }
        }
        m
    }
}

const MECHS: [Mechanism; 3] = [
    Mechanism::ScramSha256,
    Mechanism::ScramSha1,
    Mechanism::Plain,
];

fn creds() -> Credentials {
    Credentials {
        scram_sha256: Some(derive_scram_sha256("pw", b"salt", 2)),
        scram_sha1: Some(derive_scram_sha1("pw", b"salt", 2)),
    }
}

/// Drives one exchange with `first` then `second`; returns whether it ended in success.
/// Checks that an error always ends the exchange.
fn drive(mech: Mechanism, first: &[u8], second: &[u8], known: bool) -> bool {
    let (mut server, mut step) = match SaslServer::start(mech, first, b"0123456789abcdefXYZ") {
        Ok(v) => v,
        Err(_) => return false,
    };
    for _ in 0..4 {
        let next = match step {
            Step::Success { .. } => {
                assert_eq!(server.step(second), Err(SaslError::Aborted));
                return true;
            }
            Step::NeedCredentials { .. } => {
                server.provide_credentials(if known { Some(creds()) } else { None })
            }
            Step::Challenge(_) => server.step(second),
        };
        match next {
            Ok(s) => step = s,
            Err(_) => {
                assert_eq!(server.step(second), Err(SaslError::Aborted));
                assert_eq!(server.provide_credentials(None), Err(SaslError::Aborted));
                return false;
            }
        }
    }
    panic!("exchange did not end: {server:?}");
}

#[test]
fn random_bytes_never_panic_nor_succeed() {
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    for i in 0..10_000 {
        let mech = MECHS[i % 3];
        let (a, b) = (rng.bytes(), rng.bytes());
        // Random SCRAM messages cannot carry a valid proof; random PLAIN messages cannot carry
        // "pw" as the password often enough to matter, but may: only SCRAM is asserted.
        let ok = drive(mech, &a, &b, i % 2 == 0);
        if mech != Mechanism::Plain {
            assert!(!ok, "random SCRAM input succeeded: {a:?} {b:?}");
        }
        let ok = drive(mech, b"", &a, true);
        if mech != Mechanism::Plain {
            assert!(!ok, "random SCRAM input succeeded: {a:?}");
        }
    }
}

#[test]
fn mutated_messages_never_panic() {
    let mut rng = Rng(0x0dd_ba11_5eed_0002);
    let firsts: [&[u8]; 4] = [
        b"n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL",
        b"y,a=user@example.com,n=us=2Cer,r=abc,x=1",
        b"\0user\0pw",
        b"user@example.com\0user\0pw",
    ];
    let finals: [&[u8]; 2] = [
        b"c=biws,r=fyko+d2lbbFgONRv9qkxdawL0123456789abcdefXYZ,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=",
        b"c=eSxhPXVzZXJAZXhhbXBsZS5jb20s,r=abc0123456789abcdefXYZ,x=2,p=AAAA",
    ];
    let mut successes = 0;
    for i in 0..10_000 {
        let mech = MECHS[i % 3];
        let pick = rng.below(firsts.len());
        let first = rng.mutate(firsts[pick]);
        let pick = rng.below(finals.len());
        let fin = rng.mutate(finals[pick]);
        if drive(mech, &first, &fin, true) {
            successes += 1;
        }
    }
    // Mutations of "\0user\0pw" that keep it intact do log in over PLAIN; SCRAM never does
    // since the proofs above are not valid for these credentials.
    assert!(successes > 0 && successes < 10_000, "{successes}");
}
