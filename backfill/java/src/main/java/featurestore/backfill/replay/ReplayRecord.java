package featurestore.backfill.replay;

import org.apache.flink.table.data.RowData;

/**
 * A decoded row on its way from the fetcher to the emitter, with its ordering key; or a progress
 * marker ({@code row == null}) that moves the split's restart file forward.
 */
final class ReplayRecord {
    final long ts;
    final int file;
    final long rowInFile;
    final RowData row;
    final int restartFile;

    private ReplayRecord(long ts, int file, long rowInFile, RowData row, int restartFile) {
        this.ts = ts;
        this.file = file;
        this.rowInFile = rowInFile;
        this.row = row;
        this.restartFile = restartFile;
    }

    static ReplayRecord row(long ts, int file, long rowInFile, RowData row) {
        return new ReplayRecord(ts, file, rowInFile, row, -1);
    }

    static ReplayRecord marker(int restartFile) {
        return new ReplayRecord(0L, 0, 0L, null, restartFile);
    }

    boolean isMarker() {
        return row == null;
    }

    /** Ordering within a partition: (event time, file index, row in file). */
    static int compare(ReplayRecord a, ReplayRecord b) {
        int c = Long.compare(a.ts, b.ts);
        if (c != 0) {
            return c;
        }
        c = Integer.compare(a.file, b.file);
        return c != 0 ? c : Long.compare(a.rowInFile, b.rowInFile);
    }
}
