//! Parser for `/proc/interrupts`.
//!
//! Format (kernel `Documentation/filesystems/proc.rst`, `show_interrupts()` in
//! `kernel/irq/proc.c`): a header of `CPUn` column names for the online CPUs, then one line
//! per interrupt: `label:` (a number for device IRQs, a mnemonic such as `LOC` for
//! architecture ones), one count per CPU column, the irq chip, the hardware IRQ with its
//! trigger type (`5-edge`; older kernels glue it to the chip name) and the action names.
//! Short lines (`ERR:  0`) carry a single count. Lines that do not fit are skipped, never
//! fatal: this file is informational.

use serde::Serialize;

use crate::error::{AffinityError, Result};
use crate::sysroot::{SysRoot, numbered};

/// One line of `/proc/interrupts`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct InterruptLine {
    /// The label before the colon (`"101"`, `"LOC"`).
    pub label: String,
    /// The IRQ number for device interrupts.
    pub irq: Option<u32>,
    /// Counts per CPU column (see [`InterruptTable::cpus`]).
    pub counts: Vec<u64>,
    /// The irq chip and hardware IRQ text (`"IR-PCI-MSI-0000:81:00.0 1-edge"`).
    pub chip: String,
    /// The action (handler) names (`"ens1f0-TxRx-0"`), or the description for
    /// architecture interrupts.
    pub names: String,
}

impl InterruptLine {
    /// Sum over all CPUs (saturating: the counts come from a file, and a corrupt one must
    /// not overflow).
    pub fn total(&self) -> u64 {
        self.counts.iter().fold(0, |sum, &n| sum.saturating_add(n))
    }
}

/// The parsed table.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct InterruptTable {
    cpus: Vec<u32>,
    lines: Vec<InterruptLine>,
}

fn is_trigger(token: &str) -> bool {
    ["-edge", "-level", "-fasteoi", "-simple"]
        .iter()
        .any(|t| token.ends_with(t))
}

impl InterruptTable {
    /// Reads `/proc/interrupts` under `root`.
    pub fn read(root: &SysRoot) -> Result<Self> {
        let path = root.join("/proc/interrupts");
        let text = std::fs::read_to_string(&path)
            .map_err(|e| AffinityError::io(root.display_path(&path), e))?;
        Self::parse(&text)
    }

    /// Parses the file's text.
    ///
    /// ```
    /// use rtgt_affinity::InterruptTable;
    ///
    /// let table = InterruptTable::parse(
    ///     "       CPU0   CPU1\n 38:    5   16329  PCI-MSIX-0000:00:03.0  1-edge  virtio2-input.0\n",
    /// )?;
    /// assert_eq!(table.cpus(), &[0, 1]);
    /// let line = table.line(38).unwrap();
    /// assert_eq!(line.counts, vec![5, 16329]);
    /// assert_eq!(line.names, "virtio2-input.0");
    /// # Ok::<(), rtgt_affinity::AffinityError>(())
    /// ```
    pub fn parse(text: &str) -> Result<Self> {
        let mut lines_iter = text.lines();
        let header = lines_iter.next().unwrap_or("");
        let cpus: Vec<u32> = header
            .split_whitespace()
            .map(|t| numbered(t, "CPU"))
            .collect::<Option<_>>()
            .filter(|v: &Vec<u32>| !v.is_empty())
            .ok_or_else(|| {
                AffinityError::parse("/proc/interrupts", "a header of CPU columns", header)
            })?;
        let mut lines = Vec::new();
        for line in lines_iter {
            let Some((label, rest)) = line.split_once(':') else {
                continue;
            };
            let label = label.trim();
            if label.is_empty() {
                continue;
            }
            let mut tokens = rest.split_whitespace().peekable();
            let mut counts = Vec::with_capacity(cpus.len());
            while counts.len() < cpus.len() {
                match tokens.peek().and_then(|t| t.parse::<u64>().ok()) {
                    Some(n) => {
                        counts.push(n);
                        tokens.next();
                    }
                    None => break,
                }
            }
            let desc: Vec<&str> = tokens.collect();
            let irq = label.parse::<u32>().ok();
            let (chip, names) = match (irq, desc.iter().position(|t| is_trigger(t))) {
                (Some(_), Some(i)) => (desc[..=i].join(" "), desc[i + 1..].join(" ")),
                (Some(_), None) if desc.len() > 1 => (
                    desc[..desc.len() - 1].join(" "),
                    desc[desc.len() - 1..].join(" "),
                ),
                _ => (String::new(), desc.join(" ")),
            };
            lines.push(InterruptLine {
                label: label.to_owned(),
                irq,
                counts,
                chip,
                names,
            });
        }
        Ok(Self { cpus, lines })
    }

    /// CPU number of each count column.
    pub fn cpus(&self) -> &[u32] {
        &self.cpus
    }

    /// All lines, in file order.
    pub fn lines(&self) -> &[InterruptLine] {
        &self.lines
    }

    /// The line of device IRQ `irq`.
    pub fn line(&self, irq: u32) -> Option<&InterruptLine> {
        self.lines.iter().find(|l| l.irq == Some(irq))
    }

    /// Interrupts of `irq` handled on `cpu` (0 when unknown).
    pub fn count_on(&self, irq: u32, cpu: u32) -> u64 {
        let Some(col) = self.cpus.iter().position(|&c| c == cpu) else {
            return 0;
        };
        self.line(irq)
            .and_then(|l| l.counts.get(col).copied())
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIVE: &str = "           CPU0       CPU1       \n\
 24:          1          0  IO-APIC   5-edge      ACPI:Ged\n\
 36:          0      57800 PCI-MSIX-0000:00:02.0   1-edge      virtio1-req.0\n\
 44:          0          0 PCI-MSIX-0000:00:05.0   2-edge\n\
NMI:          0          0   Non-maskable interrupts\n\
ERR:          0\n\
MIS:          0\n";

    #[test]
    fn parses_modern_layout() {
        let t = InterruptTable::parse(LIVE).unwrap();
        assert_eq!(t.cpus(), &[0, 1]);
        let l = t.line(36).unwrap();
        assert_eq!(l.chip, "PCI-MSIX-0000:00:02.0 1-edge");
        assert_eq!(l.names, "virtio1-req.0");
        assert_eq!(l.total(), 57800);
        assert_eq!(t.count_on(36, 1), 57800);
        assert_eq!(t.count_on(36, 7), 0);
        // A vector without a handler has no names.
        assert_eq!(t.line(44).unwrap().names, "");
        let nmi = t.lines().iter().find(|l| l.label == "NMI").unwrap();
        assert_eq!(nmi.irq, None);
        assert_eq!(nmi.names, "Non-maskable interrupts");
        let err = t.lines().iter().find(|l| l.label == "ERR").unwrap();
        assert_eq!(err.counts, vec![0]);
    }

    #[test]
    fn parses_old_layout_and_shared_handlers() {
        let text = "      CPU0 CPU2\n 77:  3 4  IR-PCI-MSI-edge  eth0-TxRx-0, eth0-fdir\n";
        let t = InterruptTable::parse(text).unwrap();
        // Offline CPU1 has no column: columns map to CPUs 0 and 2.
        assert_eq!(t.cpus(), &[0, 2]);
        assert_eq!(t.count_on(77, 2), 4);
        let l = t.line(77).unwrap();
        assert_eq!(l.chip, "IR-PCI-MSI-edge");
        assert_eq!(l.names, "eth0-TxRx-0, eth0-fdir");
    }

    #[test]
    fn garbage_header_is_an_error_and_garbage_lines_are_skipped() {
        let err = InterruptTable::parse("hello\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "/proc/interrupts: cannot parse a header of CPU columns from \"hello\""
        );
        assert!(InterruptTable::parse("").is_err());
        let t = InterruptTable::parse("  CPU0\nnonsense\n:\n 5: x y\n").unwrap();
        assert_eq!(t.lines().len(), 1);
        assert_eq!(t.line(5).unwrap().counts, Vec::<u64>::new());
    }
}
