package featurestore.backfill.replay;

import java.io.IOException;
import java.time.Instant;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.List;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.TimeUnit;
import org.apache.flink.connector.base.source.reader.RecordsBySplits;
import org.apache.flink.connector.base.source.reader.RecordsWithSplitIds;
import org.apache.flink.connector.base.source.reader.splitreader.SplitReader;
import org.apache.flink.connector.base.source.reader.splitreader.SplitsAddition;
import org.apache.flink.connector.base.source.reader.splitreader.SplitsChange;
import org.apache.flink.metrics.Counter;
import org.apache.flink.table.data.StringData;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The merge with a horizon, for every split (partition) a reader owns, in one pass over the files.
 *
 * <p>Files are read in path order. A row of file {@code i} that is not late has event time at least
 * {@code horizon[i]} = min over {@code j >= i} of (landing start of file j) - max-lateness. So once
 * files {@code 0..i-1} are read, every buffered row with event time below {@code horizon[i]} precedes
 * every row still unread: those rows are sorted by (event time, file, row) and handed over; the rest
 * wait. A buffer therefore holds about max-lateness plus one landing period of events. A row below
 * its own file's horizon is late (it may belong before rows already emitted): the job fails, or with
 * {@code on-late = drop} the row is counted ({@code replayLateRows}) and dropped.
 */
final class ReplaySplitReader implements SplitReader<ReplayRecord, ReplaySplit> {
    private static final Logger LOG = LoggerFactory.getLogger(ReplaySplitReader.class);
    private static final int HANDOVER_BATCH = 8192;
    /** Rows per hand-over while paced in event time. */
    private static final int SPEED_UP_BATCH = 20;
    private static final int READ_CHUNK = 65_536;
    private static final int LATE_LOG_LIMIT = 10;

    private final ReplayOptions opts;
    private final RowDecoder decoder;
    private final Counter lateRows;
    private final double eventsPerSecond;
    /** Rows per hand-over: small while paced (so the rate is smooth), large before that. */
    private final int pacedBatch;
    /** Whether a row at or after the rate limit's from-time has been handed over. */
    private boolean pacing;
    /** Rows of the last hand-over the rate limit counts. */
    private int pacedRows;
    /** Event-time pacing: the newest paced row handed over, and the (wall, event) time it started at. */
    private long pacedNewestTs = Long.MIN_VALUE;
    private long paceStartNanos;
    private long paceStartMs = Long.MIN_VALUE;
    /** Where the next hand-over starts in the list of active splits (round robin). */
    private int handOverStart;
    private final Cursor[] cursors;
    private final List<Cursor> active = new ArrayList<>();
    private final Set<String> paused = ConcurrentHashMap.newKeySet();
    private volatile boolean wakeup;
    private List<HistoryFile> files;
    private long[] horizon;
    private int scanFile;
    private long currentHorizon = Long.MIN_VALUE;
    private HistoryScanner scanner;
    private StringData scanPath;
    private boolean rescan;
    private long rateStartNanos;
    private long rateCount;
    private int lateLogged;

    /** The state of one owned partition inside the fetcher. */
    private static final class Cursor {
        final String id;
        long frontierTs;
        int frontierFile;
        long frontierRow;
        int restartFile;
        ArrayList<ReplayRecord> buffer = new ArrayList<>();
        final ArrayDeque<ReplayRecord> ready = new ArrayDeque<>();
        boolean done;

        Cursor(ReplaySplit split) {
            this.id = split.splitId();
            this.frontierTs = split.frontierTs;
            this.frontierFile = split.frontierFile;
            this.frontierRow = split.frontierRow;
            this.restartFile = split.restartFile;
        }

        /** Whether (ts, file, row) comes after everything already handed over. */
        boolean after(long ts, int file, long row) {
            if (ts != frontierTs) {
                return ts > frontierTs;
            }
            return file != frontierFile ? file > frontierFile : row > frontierRow;
        }
    }

    ReplaySplitReader(ReplayOptions opts, Counter lateRows, int readers) {
        this.opts = opts;
        this.decoder = new RowDecoder(opts);
        this.lateRows = lateRows;
        this.eventsPerSecond = opts.eventsPerSecond > 0 ? opts.eventsPerSecond / Math.max(1, readers) : 0;
        this.pacedBatch = opts.speedUp > 0 ? SPEED_UP_BATCH
                : eventsPerSecond > 0 ? (int) Math.max(1, Math.min(HANDOVER_BATCH, eventsPerSecond / 20)) : HANDOVER_BATCH;
        this.cursors = new Cursor[opts.partitions];
    }

    @Override
    public void handleSplitsChanges(SplitsChange<ReplaySplit> change) {
        if (!(change instanceof SplitsAddition)) {
            throw new UnsupportedOperationException("hdfs-replay: unsupported split change " + change);
        }
        for (ReplaySplit split : change.splits()) {
            if (files == null) {
                setFiles(split.files);
            } else if (split.files.size() != files.size()) {
                throw new IllegalStateException("hdfs-replay: splits disagree on the file list");
            }
            Cursor cursor = new Cursor(split);
            cursors[split.partition] = cursor;
            active.add(cursor);
        }
        rescan = true;
    }

    private void setFiles(List<HistoryFile> list) {
        files = list;
        int n = list.size();
        horizon = new long[n + 1];
        horizon[n] = Long.MAX_VALUE;
        long min = Long.MAX_VALUE;
        for (int i = n - 1; i >= 0; i--) {
            long start = list.get(i).landingStartMs;
            long h = start == Long.MIN_VALUE ? Long.MIN_VALUE : start - opts.maxLatenessMs;
            min = Math.min(min, h);
            horizon[i] = min;
        }
    }

    /** Start (or restart, after splits were added) the pass at the earliest restart file of any split. */
    private void restartScan() throws IOException {
        closeScanner();
        int from = files.size();
        for (Cursor c : active) {
            // Rows buffered or ready but not handed over are read again; the frontier skips the rest.
            c.buffer = new ArrayList<>();
            c.ready.clear();
            c.done = false;
            from = Math.min(from, c.restartFile);
        }
        scanFile = from;
        currentHorizon = Long.MIN_VALUE;
        if (scanFile >= files.size() || horizon[scanFile] >= opts.endMs) {
            finishInput();
        }
        LOG.info("hdfs-replay: {} split(s) from file {} of {}", active.size(), scanFile, files.size());
    }

    @Override
    public RecordsWithSplitIds<ReplayRecord> fetch() throws IOException {
        if (rescan) {
            rescan = false;
            restartScan();
        }
        RecordsBySplits.Builder<ReplayRecord> batch = new RecordsBySplits.Builder<>();
        while (!wakeup) {
            int handed = handOver(batch);
            if (handed != 0) {
                throttle(pacedRows);
                keepPace(pacedRows);
                break;
            }
            if (active.isEmpty()) {
                break;
            }
            if (allPaused()) {
                // Watermark alignment holds every split of this reader back: wait, do not read ahead.
                try {
                    TimeUnit.MILLISECONDS.sleep(10);
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                }
                break;
            }
            if (scanFile < files.size() && horizon[scanFile] < opts.endMs) {
                readChunkNamingTheFile();
            } else {
                finishInput();
            }
        }
        wakeup = false;
        return batch.build();
    }

    private boolean allPaused() {
        if (paused.isEmpty()) {
            return false;
        }
        for (Cursor c : active) {
            if (!paused.contains(c.id)) {
                return false;
            }
        }
        return true;
    }

    /** Moves ready rows into the batch; returns the row count (or -1 if only splits finished). */
    private int handOver(RecordsBySplits.Builder<ReplayRecord> batch) {
        int handed = 0;
        int handoverBatch = pacing ? pacedBatch : HANDOVER_BATCH;
        pacedRows = 0;
        List<Cursor> finished = null;
        int n = active.size();
        // Start one split further each time: a small (paced) batch must not always go to the first.
        int first = n == 0 ? 0 : Math.floorMod(handOverStart++, n);
        for (int i = 0; i < n && handed < handoverBatch; i++) {
            Cursor c = active.get((first + i) % n);
            if (paused.contains(c.id)) {
                continue;
            }
            ArrayList<ReplayRecord> out = null;
            ReplayRecord r;
            while (handed < handoverBatch && (r = c.ready.poll()) != null) {
                if (out == null) {
                    out = new ArrayList<>(Math.min(c.ready.size() + 1, handoverBatch - handed));
                }
                out.add(r);
                if (r.isMarker()) {
                    c.restartFile = r.restartFile;
                } else {
                    c.frontierTs = r.ts;
                    c.frontierFile = r.file;
                    c.frontierRow = r.rowInFile;
                    handed++;
                    if (r.ts >= opts.rateFromMs) {
                        pacedRows++;
                        pacedNewestTs = Math.max(pacedNewestTs, r.ts);
                        pacing = eventsPerSecond > 0 || opts.speedUp > 0;
                    }
                }
            }
            if (out != null) {
                batch.addAll(c.id, out);
            }
            if (c.done && c.ready.isEmpty()) {
                batch.addFinishedSplit(c.id);
                if (finished == null) {
                    finished = new ArrayList<>();
                }
                finished.add(c);
            }
        }
        if (finished == null) {
            return handed;
        }
        // Only the splits reported finished in this batch: a done split the loop did not reach
        // (the batch was full) is reported by a later hand-over. Dropping it unreported would
        // leave Flink waiting for it forever while fetch() returns empty batches.
        active.removeAll(finished);
        return handed == 0 ? -1 : handed;
    }

    /** {@link #readChunk()}; a failure to read a file (corrupt, truncated, gone) names the file and row. */
    private void readChunkNamingTheFile() throws IOException {
        int file = scanFile;
        try {
            readChunk();
        } catch (IOException | RuntimeException e) {
            if (e.getMessage() != null && e.getMessage().startsWith("hdfs-replay:")) {
                throw e; // says where already
            }
            String where = scanner == null ? "opening it"
                    : scanner.row() < 0 ? "at its first row" : "after row " + scanner.row();
            try {
                closeScanner();
            } catch (IOException closing) {
                e.addSuppressed(closing);
            }
            throw new IOException("hdfs-replay: cannot read history file " + files.get(file).path + " (" + where
                    + "): " + e, e);
        }
    }

    private void readChunk() throws IOException {
        if (scanner == null) {
            HistoryFile file = files.get(scanFile);
            scanner = HistoryScanner.open(opts.format, file.path, decoder);
            scanPath = StringData.fromString(file.path);
        }
        final int fileIndex = scanFile;
        final long fileHorizon = horizon[fileIndex];
        for (int n = 0; n < READ_CHUNK && scanner.hasNext(); n++) {
            Object[] rec = scanner.next();
            long row = scanner.row();
            long ts = decoder.eventTime(rec, files.get(fileIndex).path, row);
            if (ts < opts.startMs || ts >= opts.endMs) {
                continue;
            }
            int partition = decoder.partition(rec, files.get(fileIndex).path, row);
            Cursor c = cursors[partition];
            if (c == null || c.done) {
                continue;
            }
            if (ts < fileHorizon) { // checked before the frontier, which would hide it silently
                late(fileIndex, row, ts);
                continue;
            }
            if (!c.after(ts, fileIndex, row)) { // emitted before a restore
                continue;
            }
            c.buffer.add(ReplayRecord.row(ts, fileIndex, row, decoder.toRow(rec, partition, fileIndex, row, scanPath)));
        }
        if (!scanner.hasNext()) {
            closeScanner();
            scanFile++;
            if (scanFile >= files.size() || horizon[scanFile] >= opts.endMs) {
                finishInput();
            } else if (horizon[scanFile] != currentHorizon) {
                currentHorizon = horizon[scanFile];
                for (Cursor c : active) {
                    release(c, currentHorizon, scanFile);
                }
            }
        }
    }

    /** Hands over, in order, every buffered row below the horizon; then a marker with the new restart file. */
    private static void release(Cursor c, long horizon, int nextFile) {
        if (c.done) {
            return;
        }
        ArrayList<ReplayRecord> keep = new ArrayList<>();
        ArrayList<ReplayRecord> go = new ArrayList<>();
        int restart = nextFile;
        for (ReplayRecord r : c.buffer) {
            if (r.ts < horizon) {
                go.add(r);
            } else {
                keep.add(r);
                restart = Math.min(restart, r.file);
            }
        }
        sortInPlace(go);
        c.ready.addAll(go);
        c.ready.add(ReplayRecord.marker(restart));
        c.buffer = keep;
    }

    /**
     * Sorts rows of one buffer by (event time, file, row). A buffer holds rows in scan order, which
     * is (file, row) order, so a stable sort by event time alone gives that order. With fewer than
     * 2^24 rows spanning less than 2^39 ms (17 years), each row's sort key is one long, (time
     * from the earliest) << 24 | its index, and primitive longs sort several times faster than
     * records through a comparator; otherwise the comparator sorts them.
     */
    static void sortInPlace(ArrayList<ReplayRecord> rows) {
        int n = rows.size();
        if (n < 2) {
            return;
        }
        long min = Long.MAX_VALUE;
        long max = Long.MIN_VALUE;
        for (int i = 0; i < n; i++) {
            long ts = rows.get(i).ts;
            min = Math.min(min, ts);
            max = Math.max(max, ts);
        }
        if (n >= (1 << INDEX_BITS) || max - min >= (1L << (63 - INDEX_BITS))) {
            rows.sort(ReplayRecord::compare);
            return;
        }
        long[] keys = new long[n];
        for (int i = 0; i < n; i++) {
            keys[i] = ((rows.get(i).ts - min) << INDEX_BITS) | i;
        }
        java.util.Arrays.sort(keys);
        ReplayRecord[] sorted = new ReplayRecord[n];
        for (int i = 0; i < n; i++) {
            sorted[i] = rows.get((int) (keys[i] & INDEX_MASK));
        }
        for (int i = 0; i < n; i++) {
            rows.set(i, sorted[i]);
        }
    }

    private static final int INDEX_BITS = 24;
    private static final long INDEX_MASK = (1L << INDEX_BITS) - 1;

    /** End of input (or past scan.end-ms): every buffered row is ready, every split done. */
    private void finishInput() throws IOException {
        closeScanner();
        scanFile = files.size();
        for (Cursor c : active) {
            if (!c.done) {
                sortInPlace(c.buffer);
                c.ready.addAll(c.buffer);
                c.buffer = new ArrayList<>();
                c.done = true;
            }
        }
    }

    private void late(int fileIndex, long row, long ts) throws IOException {
        lateRows.inc();
        HistoryFile file = files.get(fileIndex);
        String what = file.path + " row " + row + " has event time " + ts + " (" + Instant.ofEpochMilli(ts)
                + "), below its file's horizon " + horizon[fileIndex] + " (" + Instant.ofEpochMilli(horizon[fileIndex])
                + ": landing start minus max-lateness-ms=" + opts.maxLatenessMs + ")";
        if (opts.onLate == ReplayOptions.OnLate.FAIL) {
            throw new IOException("hdfs-replay: " + what + "; it may belong before rows already emitted. Raise "
                    + "'max-lateness-ms' to the longest delay between an event and its landing hour, or set "
                    + "'on-late' = 'drop' to count (metric replayLateRows) and drop such rows.");
        }
        if (lateLogged++ < LATE_LOG_LIMIT) {
            LOG.warn("hdfs-replay: dropped a late row: {}", what);
        }
    }

    /** Event-time pacing: hold the rows handed over until the wall clock, sped up, reaches their time. */
    private void keepPace(int paced) {
        if (opts.speedUp <= 0 || paced == 0) {
            return;
        }
        if (paceStartMs == Long.MIN_VALUE) {
            paceStartNanos = System.nanoTime();
            paceStartMs = opts.rateFromMs != Long.MIN_VALUE ? opts.rateFromMs : pacedNewestTs;
        }
        sleepUntil(paceStartNanos + (long) ((pacedNewestTs - paceStartMs) * 1e6 / opts.speedUp));
    }

    private void throttle(int handed) {
        if (eventsPerSecond <= 0 || handed == 0) {
            return;
        }
        if (rateCount == 0) {
            rateStartNanos = System.nanoTime();
        }
        rateCount += handed;
        sleepUntil(rateStartNanos + (long) (rateCount * 1e9 / eventsPerSecond));
    }

    private static void sleepUntil(long dueNanos) {
        long wait = dueNanos - System.nanoTime();
        if (wait > 0) {
            try {
                TimeUnit.NANOSECONDS.sleep(wait);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        }
    }

    @Override
    public void pauseOrResumeSplits(java.util.Collection<ReplaySplit> toPause,
            java.util.Collection<ReplaySplit> toResume) {
        for (ReplaySplit s : toPause) {
            paused.add(s.splitId());
        }
        for (ReplaySplit s : toResume) {
            paused.remove(s.splitId());
        }
        wakeUp();
    }

    @Override
    public void wakeUp() {
        wakeup = true;
    }

    private void closeScanner() throws IOException {
        if (scanner != null) {
            scanner.close();
            scanner = null;
        }
    }

    @Override
    public void close() throws IOException {
        closeScanner();
    }
}
