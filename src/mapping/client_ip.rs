//! The client's address: the socket peer, or the address a trusted proxy forwarded in
//! `X-Forwarded-For` or `Forwarded` (RFC 7239).

use std::net::IpAddr;

use super::MappingError;
use crate::config::ForwardedHeader;

/// Finds the client's address: the socket peer, or, when the peer is a trusted proxy, the
/// first untrusted address in the configured forwarding header, read from the right.
/// Each line is one line of that header as received.
pub fn client_ip(
    peer: IpAddr,
    header: ForwardedHeader,
    lines: &[&str],
    trusted: &[ipnet::IpNet],
) -> Result<IpAddr, MappingError> {
    let is_trusted = |ip: &IpAddr| is_trusted(*ip, trusted);
    if !is_trusted(&peer) {
        return Ok(peer);
    }

    let hops: Vec<&str> = match header {
        ForwardedHeader::Forwarded => lines
            .iter()
            .map(|line| {
                split_unquoted(line, ',')
                    .map_err(|message| MappingError::request(header.name(), message))
            })
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .flatten()
            .map(forwarded_for_param)
            .collect::<Result<Vec<_>, _>>()?,
        ForwardedHeader::XForwardedFor => lines
            .iter()
            .flat_map(|line| line.split(','))
            .map(str::trim)
            .collect(),
    };

    let mut client = peer;
    for hop in hops.iter().rev() {
        let ip = parse_hop(hop).ok_or_else(|| {
            MappingError::request(header.name(), format!("`{hop}` is not an IP address"))
        })?;
        client = ip;
        if !is_trusted(&ip) {
            break;
        }
    }
    Ok(client)
}

/// Returns whether `ip` is in one of the trusted proxy networks.
pub fn is_trusted(ip: IpAddr, trusted: &[ipnet::IpNet]) -> bool {
    let ip = crate::bundle::regions::canonical(ip);
    trusted.iter().any(|net| net.contains(&ip))
}

/// Reads the `for` parameter of one `Forwarded` element.
fn forwarded_for_param(element: &str) -> Result<&str, MappingError> {
    let invalid =
        |message: String| MappingError::request(ForwardedHeader::Forwarded.name(), message);
    let mut found = None;
    for pair in split_unquoted(element, ';').map_err(invalid)? {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if !key.trim().eq_ignore_ascii_case("for") {
            continue;
        }
        // RFC 7239 section 4: a parameter must not occur more than once per element.
        if found.is_some() {
            return Err(invalid(format!(
                "element `{}` repeats `for`",
                element.trim()
            )));
        }
        found = Some(unquote(value.trim()).map_err(invalid)?);
    }
    found.ok_or_else(|| {
        invalid(format!(
            "element `{}` has no `for` parameter",
            element.trim()
        ))
    })
}

/// Removes the one pair of double quotes around a quoted parameter value; an address
/// never contains quotes or backslashes, so neither may remain.
fn unquote(value: &str) -> Result<&str, String> {
    let inner = match value.strip_prefix('"') {
        Some(rest) => rest
            .strip_suffix('"')
            .ok_or_else(|| format!("`{value}` has an unclosed quote"))?,
        None => value,
    };
    if inner.contains(['"', '\\']) {
        return Err(format!("`{value}` is not an address"));
    }
    Ok(inner)
}

/// Splits a `Forwarded` header line at `separator`, except inside double-quoted strings
/// (RFC 7230 section 3.2.6), where a backslash escapes the next character. An unclosed
/// quote is an error: it would hide whatever a proxy appended after it.
fn split_unquoted(text: &str, separator: char) -> Result<Vec<&str>, String> {
    let mut parts = Vec::new();
    let mut start = 0;
    let mut quoted = false;
    let mut escaped = false;
    for (index, c) in text.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            c if c == separator && !quoted => {
                parts.push(text.get(start..index).unwrap_or_default());
                start = index + c.len_utf8();
            }
            _ => {}
        }
    }
    if quoted || escaped {
        return Err(format!("`{}` has an unclosed quoted string", text.trim()));
    }
    parts.push(text.get(start..).unwrap_or_default());
    Ok(parts)
}

/// Parses an address as proxies write it: bare, `v4:port`, `[v6]` or `[v6]:port`.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    if let Ok(ip) = hop.parse() {
        return Some(ip);
    }
    if let Some(rest) = hop.strip_prefix('[') {
        let (inner, after) = rest.split_once(']')?;
        let port_ok = after.is_empty()
            || after
                .strip_prefix(':')
                .is_some_and(|port| port.parse::<u16>().is_ok());
        return port_ok.then(|| inner.parse().ok()).flatten();
    }
    let (host, port) = hop.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    host.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(text: &str) -> ipnet::IpNet {
        text.parse()
            .unwrap_or_else(|_| unreachable!("bad test network"))
    }

    fn ip(text: &str) -> IpAddr {
        text.parse()
            .unwrap_or_else(|_| unreachable!("bad test address"))
    }

    #[test]
    fn forwarded_for_ignored_from_untrusted_peer() {
        let client = client_ip(
            ip("203.0.113.9"),
            ForwardedHeader::XForwardedFor,
            &["10.10.0.1"],
            &[net("127.0.0.0/8")],
        );
        assert_eq!(client, Ok(ip("203.0.113.9")));
    }

    #[test]
    fn forwarded_for_rightmost_untrusted_wins() {
        let trusted = [net("127.0.0.0/8"), net("172.16.0.0/12")];
        let client = client_ip(
            ip("127.0.0.1"),
            ForwardedHeader::XForwardedFor,
            &["6.6.6.6, 10.10.0.1", "172.16.0.5"],
            &trusted,
        );
        assert_eq!(client, Ok(ip("10.10.0.1")));
    }

    #[test]
    fn forwarded_header_parsed() {
        let client = client_ip(
            ip("127.0.0.1"),
            ForwardedHeader::Forwarded,
            &["for=192.0.2.60;proto=http, for=\"[2001:db8::1]:4711\""],
            &[net("127.0.0.0/8")],
        );
        assert_eq!(client, Ok(ip("2001:db8::1")));
    }

    #[test]
    fn forwarded_for_garbage_rejected() {
        let client = client_ip(
            ip("127.0.0.1"),
            ForwardedHeader::XForwardedFor,
            &["not-an-ip"],
            &[net("127.0.0.0/8")],
        );
        assert!(
            matches!(client, Err(MappingError::Request { field, .. }) if field == "x-forwarded-for")
        );
    }

    #[test]
    fn forwarded_quotes_and_repeats() {
        let trusted = [net("127.0.0.0/8")];
        let quoted_comma = client_ip(
            ip("127.0.0.1"),
            ForwardedHeader::Forwarded,
            &["for=192.0.2.60;by=\"a,b\""],
            &trusted,
        );
        assert_eq!(quoted_comma, Ok(ip("192.0.2.60")));
        let repeated = client_ip(
            ip("127.0.0.1"),
            ForwardedHeader::Forwarded,
            &["for=127.0.0.1;for=198.51.100.7"],
            &trusted,
        );
        assert!(
            matches!(repeated, Err(MappingError::Request { .. })),
            "{repeated:?}"
        );
        let bare_repeat = client_ip(
            ip("127.0.0.1"),
            ForwardedHeader::Forwarded,
            &["for=5.5.5.5;for"],
            &trusted,
        );
        assert!(bare_repeat.is_err(), "{bare_repeat:?}");
    }

    #[test]
    fn forwarded_unclosed_quote_rejected() {
        // A proxy appended its own element after the client's unclosed quote.
        let trusted = [net("127.0.0.0/8")];
        for line in [
            "for=1.2.3.4;by=\", for=6.6.6.6",
            "for=1.2.3.4;by=\"x\\\", for=6.6.6.6",
            "for=\"\"5.5.5.5\"\"",
        ] {
            let client = client_ip(
                ip("127.0.0.1"),
                ForwardedHeader::Forwarded,
                &[line],
                &trusted,
            );
            assert!(client.is_err(), "{line}: {client:?}");
        }
    }

    #[test]
    fn bracketed_address_trailing_text_rejected() {
        let trusted = [net("127.0.0.0/8")];
        for (header, line) in [
            (ForwardedHeader::XForwardedFor, "[2001:db8::1]junk"),
            (ForwardedHeader::Forwarded, "for=\"[2001:db8:30::1]junk\""),
        ] {
            let client = client_ip(ip("127.0.0.1"), header, &[line], &trusted);
            assert!(client.is_err(), "{line}: {client:?}");
        }
        let with_port = client_ip(
            ip("127.0.0.1"),
            ForwardedHeader::XForwardedFor,
            &["[2001:db8::1]:443"],
            &trusted,
        );
        assert_eq!(with_port, Ok(ip("2001:db8::1")));
    }
}
