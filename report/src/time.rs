//! The report's clock: the time zone its reader lives in (`--timezone`, by
//! default the machine's), the period's ends as given (any RFC 3339 offset,
//! or a local time in that zone), local whole hours and local days.
//!
//! jiff, because time zones are not ours to write: it reads the IANA
//! database (bundled here, so a host without tzdata still knows
//! Asia/Shanghai), the machine's zone from `TZ` or `/etc/localtime`, and
//! parses RFC 3339 with any offset.

use jiff::tz::TimeZone;
use jiff::Timestamp;

use super::ReportError;

/// The zone every time in the report is shown in.
#[derive(Clone)]
pub struct Zone {
    tz: TimeZone,
    /// What the report prints: the IANA name, or the offset for a zone
    /// without one.
    pub name: String,
}

impl Zone {
    /// `--timezone NAME`, or the machine's zone.
    pub fn new(name: Option<&str>) -> Result<Zone, ReportError> {
        let tz = match name {
            Some(n) => TimeZone::get(n).map_err(|e| {
                ReportError::Argument(
                    "--timezone",
                    format!(
                        "{n:?} is not an IANA time zone name such as Asia/Shanghai or UTC ({e})"
                    ),
                )
            })?,
            None => TimeZone::try_system().unwrap_or(TimeZone::UTC),
        };
        let name = match tz.iana_name() {
            Some(n) => n.to_string(),
            None => format!("UTC{}", tz.to_offset(Timestamp::now())),
        };
        Ok(Zone { tz, name })
    }

    /// The zone's offset from UTC at `unix`, in seconds.
    pub fn offset(&self, unix: f64) -> i64 {
        i64::from(self.tz.to_offset(ts(unix)).seconds())
    }

    /// `2026-10-15 20:00` in this zone.
    pub fn minute(&self, unix: f64) -> String {
        ts(unix)
            .to_zoned(self.tz.clone())
            .strftime("%Y-%m-%d %H:%M")
            .to_string()
    }

    /// `2026-10-15` in this zone: the local day `unix` falls in.
    pub fn day(&self, unix: f64) -> String {
        ts(unix)
            .to_zoned(self.tz.clone())
            .strftime("%Y-%m-%d")
            .to_string()
    }

    /// The local hour of day (0-23) of `unix`.
    pub fn hour_of_day(&self, unix: f64) -> u8 {
        ts(unix).to_zoned(self.tz.clone()).hour() as u8
    }

    /// The UTC offset at `unix` as `UTC+08:00`.
    pub fn utc_offset(&self, unix: f64) -> String {
        let s = self.offset(unix);
        format!(
            "UTC{}{:02}:{:02}",
            if s < 0 { '-' } else { '+' },
            s.abs() / 3600,
            s.abs() % 3600 / 60
        )
    }

    /// The first local whole hour at or after `unix`. Offsets are whole
    /// quarter hours, so the next ones are this plus whole hours (a DST
    /// change moves the clock by an hour and keeps them whole).
    pub fn next_whole_hour(&self, unix: f64) -> f64 {
        let off = self.offset(unix) as f64;
        ((unix + off) / 3600.0).ceil() * 3600.0 - off
    }

    /// `--from`/`--to`: RFC 3339 with any offset (`2026-11-01T00:00:00+08:00`,
    /// `…Z`), or a local time or date without one, read in this zone
    /// (`2026-11-01`, `2026-11-01 08:00`).
    pub fn parse(&self, flag: &'static str, s: &str) -> Result<f64, ReportError> {
        if let Ok(t) = s.parse::<Timestamp>() {
            return Ok(t.as_second() as f64);
        }
        s.parse::<jiff::civil::DateTime>()
            .map_err(|e| ReportError::Argument(flag, format!("{s:?}: not RFC 3339 ({e})")))?
            .to_zoned(self.tz.clone())
            .map(|z| z.timestamp().as_second() as f64)
            .map_err(|e| ReportError::Argument(flag, format!("{s:?}: {e}")))
    }
}

fn ts(unix: f64) -> Timestamp {
    Timestamp::from_second(unix.floor() as i64).unwrap_or(Timestamp::UNIX_EPOCH)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_names_and_local_hours() {
        let sh = Zone::new(Some("Asia/Shanghai")).unwrap();
        assert_eq!(sh.name, "Asia/Shanghai");
        // 2026-11-01T00:00:00+08:00 is 2026-10-31T16:00:00Z.
        let t = sh.parse("--from", "2026-11-01T00:00:00+08:00").unwrap();
        assert_eq!(t, 1_793_462_400.0);
        assert_eq!(sh.parse("--from", "2026-11-01").unwrap(), t);
        assert_eq!(sh.parse("--from", "2026-10-31T16:00:00Z").unwrap(), t);
        assert_eq!(sh.minute(t), "2026-11-01 00:00");
        assert_eq!(sh.day(t - 1.0), "2026-10-31");
        assert_eq!(sh.hour_of_day(t), 0);
        assert_eq!(sh.utc_offset(t), "UTC+08:00");
        let india = Zone::new(Some("Asia/Kolkata")).unwrap();
        // Whole local hours are half past in UTC there.
        assert_eq!(india.next_whole_hour(t) - t, 1800.0);
        assert_eq!(india.minute(india.next_whole_hour(t)), "2026-10-31 22:00");
        assert!(Zone::new(Some("Mars/Olympus")).is_err());
        assert!(sh.parse("--to", "yesterday").is_err());
    }

    proptest::proptest! {
        /// Whatever is typed after --from: a time or an error, never a panic.
        #[test]
        fn any_time_argument_parses_or_is_refused(s in "\\PC{0,40}") {
            let zone = Zone::new(Some("Asia/Shanghai")).unwrap();
            let _ = zone.parse("--from", &s);
        }

        #[test]
        fn any_zone_name_is_a_zone_or_an_error(s in "[A-Za-z_/+0-9-]{0,30}") {
            let _ = Zone::new(Some(&s));
        }
    }
}
