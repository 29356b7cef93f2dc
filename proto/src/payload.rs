//! A frame's payload: the decoder of its token (ADM-CID, SIA-DCS, or none for a NULL).

use super::dc09::Token;
use super::event::{Payload, PayloadError, split_account};

/// Decodes the data block of a frame (`Content::data`) according to its token.
///
/// * `Null`: always `Ok` with no events, whatever the data (NULLs with data occur in the
///   field, §1.8); the account is taken from a leading `#acct|` if present.
/// * `AdmCid`: [`super::contact_id::decode`].
/// * `SiaDcs`: [`super::sia_dcs::decode`].
/// * anything else: [`PayloadError::UnsupportedToken`].
///
/// Unknown event codes are not errors: they decode, and [`super::event::name`] returns `None`
/// for them.
pub fn decode_payload(token: Token, data: &[u8]) -> Result<Payload, PayloadError> {
    match token {
        Token::Null => {
            let account = split_account(data).ok().and_then(|(acct, _)| acct);
            Ok(Payload {
                account,
                events: Vec::new(),
            })
        }
        Token::AdmCid => super::contact_id::decode(data),
        Token::SiaDcs => super::sia_dcs::decode(data),
        Token::Ack | Token::Nak | Token::Duh | Token::Rsp | Token::Other => {
            Err(PayloadError::UnsupportedToken)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn null_and_unsupported() {
        let p = decode_payload(Token::Null, b"").expect("null");
        assert!(p.events.is_empty() && p.account.is_none());
        let p = decode_payload(Token::Null, b"#0000|0000 00 000").expect("null with data");
        assert!(p.events.is_empty());
        assert_eq!(p.account.as_deref(), Some("0000"));
        assert!(decode_payload(Token::Null, b"\xff\x00garbage]").is_ok());
        assert_eq!(
            decode_payload(Token::Ack, b""),
            Err(PayloadError::UnsupportedToken)
        );
        assert_eq!(PayloadError::UnsupportedToken.as_str(), "unsupported_token");
    }
}
