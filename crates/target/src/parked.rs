//! Commands parked behind the COMPARE AND WRITE gate (rtgt-scsi's `Step::Blocked`, SBC-4
//! §5.3: COMPARE AND WRITE is atomic against every other write to its blocks) and their retry,
//! shared by the TCP and the iSER reactors.

use rtgt_session::target::TaskId;

/// A reactor that parks blocked commands and retries them when the gate opens.
pub(crate) trait ParkedCommands {
    /// The parked commands: (session index, task).
    fn parked(&mut self) -> &mut Vec<(usize, TaskId)>;
    /// Runs a command's `execute` step again.
    fn execute_again(&mut self, sidx: usize, id: TaskId);
    /// Sends what a session has ready.
    fn drive(&mut self, sidx: usize);

    /// Retries every parked command, then drives each session that had one, once.
    fn retry_blocked(&mut self) {
        if self.parked().is_empty() {
            return;
        }
        let list = core::mem::take(self.parked());
        let mut touched: Vec<usize> = Vec::new();
        for (sidx, id) in list {
            self.execute_again(sidx, id);
            if !touched.contains(&sidx) {
                touched.push(sidx);
            }
        }
        for sidx in touched {
            self.drive(sidx);
        }
    }
}
