//! Content negotiation for `/metrics`, as client_golang's `expfmt.Negotiate`
//! does it: OpenMetrics when the scraper's `Accept` asks for it (Prometheus
//! does), the Prometheus text format 0.0.4 otherwise (curl, older tools).
//! Both are encoded from the one registry by `prometheus-client`.

use prometheus_client::registry::Registry;

pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";
pub const TEXT_CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    OpenMetrics,
    Text,
}

impl Format {
    pub fn content_type(self) -> &'static str {
        match self {
            Format::OpenMetrics => OPENMETRICS_CONTENT_TYPE,
            Format::Text => TEXT_CONTENT_TYPE,
        }
    }

    /// Picks the format from an `Accept` header. Media ranges are tried by
    /// falling `q`, ties keeping header order; the first one we can produce
    /// wins. OpenMetrics is produced for versions 0.0.1 and 1.0.0 (and no
    /// version); text/plain only for 0.0.4 or no version.
    pub fn negotiate(accept: Option<&str>) -> Format {
        let Some(accept) = accept else {
            return Format::Text;
        };
        let mut ranges: Vec<(f32, usize, Option<Format>)> = accept
            .split(',')
            .enumerate()
            .filter_map(|(i, part)| {
                let mut params = part.split(';').map(str::trim);
                let media = params.next()?.to_ascii_lowercase();
                let mut q = 1.0f32;
                let mut version = None;
                for p in params {
                    let Some((k, v)) = p.split_once('=') else {
                        continue;
                    };
                    let v = v.trim().trim_matches('"');
                    match k.trim().to_ascii_lowercase().as_str() {
                        "q" => q = v.parse().unwrap_or(0.0),
                        "version" => version = Some(v.to_string()),
                        _ => {}
                    }
                }
                let format = match (media.as_str(), version.as_deref()) {
                    ("application/openmetrics-text", None | Some("1.0.0") | Some("0.0.1")) => {
                        Some(Format::OpenMetrics)
                    }
                    ("text/plain", None | Some("0.0.4")) => Some(Format::Text),
                    _ => None,
                };
                (q > 0.0).then_some((q, i, format))
            })
            .collect();
        ranges.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        ranges
            .into_iter()
            .find_map(|(_, _, f)| f)
            .unwrap_or(Format::Text)
    }

    /// Encodes the registry in this format.
    pub fn encode(self, registry: &Registry) -> Result<String, std::fmt::Error> {
        let mut out = String::with_capacity(16 * 1024);
        match self {
            Format::OpenMetrics => prometheus_client::encoding::text::encode(&mut out, registry)?,
            Format::Text => {
                prometheus_client::encoding::prometheus_text::encode(&mut out, registry)?
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_default_accept_header_gets_openmetrics() {
        let h = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert_eq!(Format::negotiate(Some(h)), Format::OpenMetrics);
    }

    #[test]
    fn protobuf_first_falls_through_to_openmetrics() {
        let h = "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.9,application/openmetrics-text;version=1.0.0;q=0.8,text/plain;version=0.0.4;q=0.2";
        assert_eq!(Format::negotiate(Some(h)), Format::OpenMetrics);
    }

    #[test]
    fn curl_and_missing_header_get_text() {
        assert_eq!(Format::negotiate(None), Format::Text);
        assert_eq!(Format::negotiate(Some("*/*")), Format::Text);
        assert_eq!(Format::negotiate(Some("text/plain")), Format::Text);
    }

    #[test]
    fn q_values_order_the_choice() {
        let h = "application/openmetrics-text;version=1.0.0;q=0.2,text/plain;version=0.0.4;q=0.9";
        assert_eq!(Format::negotiate(Some(h)), Format::Text);
        let h = "application/openmetrics-text;version=2.0.0,text/plain;q=0.1";
        assert_eq!(Format::negotiate(Some(h)), Format::Text);
        assert_eq!(
            Format::negotiate(Some("application/openmetrics-text;q=0")),
            Format::Text
        );
    }
}

#[cfg(test)]
mod fuzz {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn any_accept_header_negotiates(h in "\\PC{0,200}") {
            let _ = Format::negotiate(Some(&h));
        }
    }
}
