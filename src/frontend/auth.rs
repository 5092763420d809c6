//! Logins: per-connection scrambles and ids, and the `mysql_native_password`
//! check against the `*HEX` double-SHA1 hash MariaDB stores (the plain
//! password never needs to be on the proxy's disk).

use std::sync::atomic::{AtomicU32, Ordering};

use rand::Rng;
use sha1::{Digest, Sha1};

/// Length of the scramble (auth-plugin-data) in the initial handshake.
pub const SCRAMBLE_LEN: usize = 20;

/// `SHA1(SHA1(password))`, written `*` + 40 uppercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct NativePasswordHash([u8; 20]);

impl std::fmt::Debug for NativePasswordHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NativePasswordHash(<redacted>)")
    }
}

impl NativePasswordHash {
    /// Parses the `*HEX` form of `SELECT PASSWORD('...')` / `mysql.user.authentication_string`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let hex_part = text
            .strip_prefix('*')
            .ok_or("must be '*' followed by 40 hex digits")?;
        if hex_part.len() != 40 {
            return Err(format!(
                "must be '*' followed by 40 hex digits (got {} digits)",
                hex_part.len()
            ));
        }
        let mut bytes = [0u8; 20];
        hex::decode_to_slice(hex_part, &mut bytes)
            .map_err(|_| "must be '*' followed by 40 hex digits (found a non-hex character)")?;
        Ok(NativePasswordHash(bytes))
    }

    pub fn of_password(password: &[u8]) -> Self {
        let stage1 = Sha1::digest(password);
        NativePasswordHash(Sha1::digest(stage1).into())
    }

    /// The `*HEX` form, as MariaDB prints it.
    pub fn to_hex(&self) -> String {
        format!("*{}", hex::encode_upper(self.0))
    }

    /// Checks a client's `mysql_native_password` response:
    /// `response = SHA1(pw) XOR SHA1(scramble ++ SHA1(SHA1(pw)))`, so
    /// `SHA1(response XOR SHA1(scramble ++ stored)) == stored` iff the password is right.
    pub fn verify(&self, scramble: &[u8], response: &[u8]) -> bool {
        if response.len() != 20 {
            return false;
        }
        let mut hasher = Sha1::new();
        hasher.update(scramble);
        hasher.update(self.0);
        let mask = hasher.finalize();
        let mut stage1 = [0u8; 20];
        for i in 0..20 {
            stage1[i] = response[i] ^ mask[i];
        }
        let candidate: [u8; 20] = Sha1::digest(stage1).into();
        constant_time_eq(&candidate, &self.0)
    }
}

fn constant_time_eq(a: &[u8; 20], b: &[u8; 20]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A fresh random scramble. Bytes are 7-bit and never NUL or `$`, because
/// some clients treat the scramble as a C string (GreptimeDB does the same).
pub fn new_scramble() -> [u8; SCRAMBLE_LEN] {
    let mut rng = rand::thread_rng();
    let mut scramble = [0u8; SCRAMBLE_LEN];
    for byte in scramble.iter_mut() {
        let mut b = rng.r#gen::<u8>() & 0x7f;
        if b == 0 || b == b'$' {
            b += 1;
        }
        *byte = b;
    }
    scramble
}

/// Hands out connection ids: unique within the process, never 0.
#[derive(Debug, Default)]
pub struct ConnectionIds(AtomicU32);

impl ConnectionIds {
    pub fn next(&self) -> u32 {
        loop {
            let id = self.0.fetch_add(1, Ordering::Relaxed).wrapping_add(1);
            if id != 0 {
                return id;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a client computes from the plain password.
    fn client_response(password: &[u8], scramble: &[u8]) -> Vec<u8> {
        let stage1 = Sha1::digest(password);
        let stage2 = Sha1::digest(stage1);
        let mut hasher = Sha1::new();
        hasher.update(scramble);
        hasher.update(stage2);
        let mask = hasher.finalize();
        stage1.iter().zip(mask.iter()).map(|(a, b)| a ^ b).collect()
    }

    #[test]
    fn hash_matches_mariadb_password_function() {
        // SELECT PASSWORD('password') on MariaDB 10.11.
        assert_eq!(
            NativePasswordHash::of_password(b"password").to_hex(),
            "*2470C0C06DEE42FD1618BB99005ADCA2EC9D1E19"
        );
    }

    #[test]
    fn verify_accepts_right_and_rejects_wrong_password() {
        let hash = NativePasswordHash::parse("*2470C0C06DEE42FD1618BB99005ADCA2EC9D1E19").unwrap();
        let scramble = new_scramble();
        assert!(hash.verify(&scramble, &client_response(b"password", &scramble)));
        assert!(!hash.verify(&scramble, &client_response(b"Password", &scramble)));
        assert!(!hash.verify(&scramble, &[]));
        let other = new_scramble();
        assert!(!hash.verify(&other, &client_response(b"password", &scramble)));
    }

    #[test]
    fn parse_rejects_malformed_hashes() {
        assert!(NativePasswordHash::parse("2470C0C06DEE42FD1618BB99005ADCA2EC9D1E19").is_err());
        assert!(NativePasswordHash::parse("*2470").is_err());
        assert!(NativePasswordHash::parse("*ZZ70C0C06DEE42FD1618BB99005ADCA2EC9D1E19").is_err());
    }

    #[test]
    fn scrambles_and_ids_differ_per_connection() {
        let a = new_scramble();
        let b = new_scramble();
        assert_ne!(a, b);
        assert!(a.iter().all(|&c| c != 0 && c != b'$' && c < 0x80));
        let ids = ConnectionIds::default();
        let (x, y) = (ids.next(), ids.next());
        assert_ne!(x, y);
        assert_ne!(x, 0);
    }
}
