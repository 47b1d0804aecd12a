//! Moving letters out of the queue and back: export to a file, purge (after
//! exporting, if asked), and import from a file.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use lapin::Connection;
use serde::Serialize;

use herald_client::{Outgoing, Publisher};
use herald_core::protocol::{DEAD_EXCHANGE, SEND_EXCHANGE};

use crate::letter::{DeadLetter, Envelope};
use crate::line::ExportLine;
use crate::pass::{Pass, Taken};
use crate::replay::replayed_properties;
use crate::{DlqError, Progress, Selection, browse};

/// Letters a purge removes between two fsyncs of its export file.
const PURGE_BATCH: usize = 500;

/// A new export file (never overwrites one: it may be the only copy of what
/// an earlier purge removed).
pub struct ExportFile {
    path: PathBuf,
    writer: BufWriter<File>,
    written: u64,
}

impl ExportFile {
    pub fn create(path: &Path) -> Result<ExportFile, DlqError> {
        let file = File::options()
            .write(true)
            .create_new(true)
            .open(path)
            .map_err(|source| file_error(path, source))?;
        Ok(ExportFile {
            path: path.to_owned(),
            writer: BufWriter::new(file),
            written: 0,
        })
    }

    pub fn write(&mut self, letter: &DeadLetter) -> Result<(), DlqError> {
        let line = ExportLine::from_envelope(&letter.envelope).to_line();
        writeln!(self.writer, "{line}").map_err(|e| file_error(&self.path, e))?;
        self.written += 1;
        Ok(())
    }

    /// Flushes and fsyncs: what was written survives a crash from here on.
    pub fn sync(&mut self) -> Result<(), DlqError> {
        self.writer
            .flush()
            .and_then(|()| self.writer.get_ref().sync_all())
            .map_err(|e| file_error(&self.path, e))
    }

    /// Lines written so far.
    pub fn written(&self) -> u64 {
        self.written
    }
}

fn file_error(path: &Path, source: std::io::Error) -> DlqError {
    DlqError::File {
        path: path.to_owned(),
        source,
    }
}

/// Writes the selected letters to `file`, leaving them in the queue.
pub async fn export(
    connection: &Connection,
    selection: &Selection,
    file: &mut ExportFile,
    progress: &dyn Progress,
) -> Result<u64, DlqError> {
    let tally = browse(connection, selection, progress, |letter| file.write(letter)).await?;
    file.sync()?;
    Ok(tally.matched)
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PurgeReport {
    /// Removed (with `dry_run`: would have been).
    pub purged: u64,
    /// Not selected; left in place.
    pub skipped: u64,
    pub dry_run: bool,
}

/// Removes the selected letters. With `export`, each is written to it and
/// the file fsynced before the letter is acked.
pub async fn purge(
    connection: &Connection,
    selection: &Selection,
    dry_run: bool,
    mut export: Option<&mut ExportFile>,
    progress: &dyn Progress,
) -> Result<PurgeReport, DlqError> {
    let mut batch: Vec<Taken> = Vec::new();
    let mut pass = Pass::open(connection).await?;
    let selected = pass
        .select(selection, progress, async |taken| {
            if dry_run {
                return Ok(());
            }
            if let Some(file) = export.as_deref_mut() {
                file.write(&taken.letter)?;
            }
            batch.push(taken);
            if batch.len() >= PURGE_BATCH {
                remove_batch(&mut batch, export.as_deref_mut()).await?;
            }
            Ok(())
        })
        .await;
    // A failed pass leaves its batch unacked: `finish` puts it back.
    let removed = match selected {
        Ok(tally) => remove_batch(&mut batch, export).await.map(|()| tally),
        Err(e) => Err(e),
    };
    pass.finish().await?;
    let tally = removed?;
    Ok(PurgeReport {
        purged: tally.matched,
        skipped: tally.skipped,
        dry_run,
    })
}

async fn remove_batch(
    batch: &mut Vec<Taken>,
    export: Option<&mut ExportFile>,
) -> Result<(), DlqError> {
    if let Some(file) = export {
        file.sync()?;
    }
    for taken in batch.drain(..) {
        taken.remove().await?;
    }
    Ok(())
}

/// Reads a whole export file, so a bad line stops an import before any of
/// it is published.
pub fn read_export(path: &Path) -> Result<Vec<Envelope>, DlqError> {
    let file = File::open(path).map_err(|e| file_error(path, e))?;
    let mut envelopes = Vec::new();
    for (index, line) in BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|e| file_error(path, e))?;
        if line.trim().is_empty() {
            continue;
        }
        let envelope = ExportLine::parse(&line).map_err(|source| DlqError::Line {
            path: path.to_owned(),
            line: index + 1,
            source,
        })?;
        envelopes.push(envelope);
    }
    Ok(envelopes)
}

/// Where imported messages go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportTarget {
    /// Back into `herald.dead`, exactly as exported.
    DeadQueue,
    /// Straight to `herald.send`, as a replay (attempt reset, replay counted).
    Send,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ImportReport {
    pub imported: u64,
}

/// Publishes `envelopes` in order, each confirmed before the next.
pub async fn import(
    connection: &Connection,
    envelopes: &[Envelope],
    target: ImportTarget,
    progress: &dyn Progress,
) -> Result<ImportReport, DlqError> {
    let publisher = Publisher::new(connection).await?;
    let total = envelopes.len() as u64;
    progress.start(total);
    let mut report = ImportReport::default();
    for envelope in envelopes {
        let (exchange, properties) = match target {
            ImportTarget::DeadQueue => (DEAD_EXCHANGE, envelope.properties.clone()),
            ImportTarget::Send => (SEND_EXCHANGE, replayed_properties(envelope)),
        };
        let outgoing = Outgoing {
            exchange,
            routing_key: &envelope.routing_key,
            body: &envelope.body,
            properties,
            mandatory: true,
        };
        publisher
            .publish(outgoing)
            .await
            .map_err(|source| DlqError::ImportStopped {
                imported: report.imported,
                total,
                source,
            })?;
        report.imported += 1;
        progress.step();
    }
    Ok(report)
}
