//! The period's backups, per kind: how many new files `backup.sh` made
//! (changes of the newest file's time), how many the exporter read back,
//! how many failed and why, and whether the newest one at the period's
//! end reads back; and the restore drills of the period by result. The
//! section renders itself, in English or Chinese.

use std::collections::BTreeMap;
use std::fmt::Write;

use serde::Serialize;

use super::model::{Finding, Severity, Subject};
use super::prometheus::{Client, Labels};
use super::{cell, Job, Lang, ReportError};

/// One kind's backups over the period.
#[derive(Debug, Clone, Default, Serialize)]
pub struct KindBackups {
    pub kind: String,
    /// New newest files seen (one a day for a daily backup.sh).
    pub made: f64,
    /// Files read back by the exporter's check.
    pub checked: f64,
    /// Files found invalid, by reason.
    pub invalid: BTreeMap<String, f64>,
    /// Whether the newest complete file read back at the period's end.
    pub newest_valid: Option<bool>,
}

fn label(l: &Labels, name: &str) -> String {
    l.get(name).cloned().unwrap_or_default()
}

/// The period's backups per kind, and its restore drills by result.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Backups {
    pub kinds: Vec<KindBackups>,
    /// Restore drills by result (succeeded, failed, refused); empty when
    /// the drill is off.
    pub drills: BTreeMap<String, f64>,
}

/// The period `[to - d, to]`'s backups; `d` is a PromQL duration.
pub async fn backups(client: &Client, job: &Job, d: &str, to: f64) -> Result<Backups, ReportError> {
    let v = |expr: String| async move { client.vector(&expr, to).await };
    let newest = job.sel("llmchat_backup_newest_timestamp_seconds", "");
    let checked = job.sel("llmchat_backup_newest_check_timestamp_seconds", "");
    let invalid = job.sel("llmchat_backup_invalid_files_total", "");
    let valid = job.sel("llmchat_backup_newest_valid", "");
    // max across exporters watching the same folder: the same files.
    let drills = job.sel("llmchat_backup_drill_runs_total", "");
    let (made, checks, invalid, valid, drills) = tokio::try_join!(
        v(format!("max by (kind) (changes({newest}[{d}]))")),
        v(format!("max by (kind) (changes({checked}[{d}]))")),
        v(format!("max by (kind, reason) (increase({invalid}[{d}]))")),
        v(format!("min by (kind) (last_over_time({valid}[{d}]))")),
        v(format!("max by (result) (increase({drills}[{d}]))")),
    )?;
    let mut out: BTreeMap<String, KindBackups> = BTreeMap::new();
    for (l, n) in &made {
        kind_of(&mut out, l).made = n.round();
    }
    for (l, n) in &checks {
        kind_of(&mut out, l).checked = n.round();
    }
    for (l, n) in &invalid {
        if n.round() > 0.0 {
            kind_of(&mut out, l)
                .invalid
                .insert(label(l, "reason"), n.round());
        }
    }
    for (l, n) in &valid {
        kind_of(&mut out, l).newest_valid = Some(*n >= 1.0);
    }
    Ok(Backups {
        kinds: out.into_values().collect(),
        drills: drills
            .iter()
            .map(|(l, n)| (label(l, "result"), n.round()))
            .collect(),
    })
}

fn kind_of<'a>(out: &'a mut BTreeMap<String, KindBackups>, l: &Labels) -> &'a mut KindBackups {
    let kind = label(l, "kind");
    out.entry(kind.clone()).or_insert_with(|| KindBackups {
        kind,
        ..KindBackups::default()
    })
}

/// A kind with an invalid file in the period, or whose newest file does
/// not read back: critical, as a restore from it would fail. A drill that
/// failed or was refused: a warning.
pub fn findings(b: &Backups) -> Vec<Finding> {
    let failed_drills: f64 = ["failed", "refused"]
        .iter()
        .filter_map(|r| b.drills.get(*r))
        .sum();
    let drill = (failed_drills > 0.0).then(|| Finding {
        kind: "backup_drill_failed",
        severity: Severity::Warning,
        value: failed_drills,
        threshold: 0.0,
        subject: Subject::default(),
    });
    b.kinds
        .iter()
        .filter_map(|k| {
            let invalid: f64 = k.invalid.values().sum();
            (invalid > 0.0 || k.newest_valid == Some(false)).then(|| Finding {
                kind: "backup_invalid",
                severity: Severity::Critical,
                value: invalid,
                threshold: 0.0,
                subject: Subject {
                    backup_kind: Some(k.kind.clone()),
                    ..Subject::default()
                },
            })
        })
        .chain(drill)
        .collect()
}

/// The section, in Markdown.
pub fn render(w: &mut String, b: &Backups, lang: Lang) {
    let kinds = &b.kinds;
    let (title, none, header, yes, no, unknown, drills) = match lang {
        Lang::En => (
            "Backups",
            "No backup metrics in the period (llmchat_backup_*).",
            "| Kind | Made | Read back | Invalid | Newest reads back |",
            "yes",
            "**no**",
            "not checked",
            "Restore drills: ",
        ),
        Lang::Zh => (
            "备份",
            "本时段没有备份指标（llmchat_backup_*）。",
            "| 类型 | 新备份 | 已回读校验 | 无效 | 最新备份可读 |",
            "是",
            "**否**",
            "未校验",
            "恢复演练：",
        ),
    };
    let _ = writeln!(w, "## {title}\n");
    if kinds.is_empty() {
        let _ = writeln!(w, "{none}\n");
        return;
    }
    let _ = writeln!(w, "{header}\n|---|---|---|---|---|");
    for k in kinds {
        let invalid = if k.invalid.is_empty() {
            "0".to_string()
        } else {
            k.invalid
                .iter()
                .map(|(reason, n)| format!("{n} {}", cell(reason)))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let newest = match k.newest_valid {
            Some(true) => yes,
            Some(false) => no,
            None => unknown,
        };
        let _ = writeln!(
            w,
            "| {} | {} | {} | {invalid} | {newest} |",
            cell(&k.kind),
            k.made,
            k.checked
        );
    }
    w.push('\n');
    if !b.drills.is_empty() {
        let runs: Vec<String> = b
            .drills
            .iter()
            .map(|(result, n)| format!("{n} {}", cell(result)))
            .collect();
        let _ = writeln!(w, "{drills}{}\n", runs.join(", "));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_invalid_file_or_an_unreadable_newest_one_is_a_critical_finding() {
        let mut bad = KindBackups {
            kind: "database".into(),
            made: 30.0,
            checked: 30.0,
            newest_valid: Some(true),
            ..KindBackups::default()
        };
        bad.invalid.insert("truncated".into(), 1.0);
        let newest_bad = KindBackups {
            kind: "uploads".into(),
            newest_valid: Some(false),
            ..KindBackups::default()
        };
        let fine = KindBackups {
            kind: "config".into(),
            newest_valid: Some(true),
            ..KindBackups::default()
        };
        let mut b = Backups {
            kinds: vec![bad, newest_bad, fine],
            drills: BTreeMap::new(),
        };
        let f = findings(&b);
        let kinds: Vec<_> = f.iter().map(|f| f.subject.backup_kind.clone()).collect();
        assert_eq!(kinds, [Some("database".into()), Some("uploads".into())]);
        assert!(f.iter().all(|f| f.severity == Severity::Critical));
        b.drills.insert("succeeded".into(), 29.0);
        assert_eq!(findings(&b).len(), 2, "a succeeded drill is no finding");
        b.drills.insert("failed".into(), 1.0);
        let f = findings(&b);
        assert_eq!(f.last().map(|f| f.kind), Some("backup_drill_failed"));
    }
}
