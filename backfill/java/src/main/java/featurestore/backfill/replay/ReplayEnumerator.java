package featurestore.backfill.replay;

import java.io.IOException;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.List;
import java.util.Map;
import org.apache.flink.api.connector.source.SplitEnumerator;
import org.apache.flink.api.connector.source.SplitEnumeratorContext;
import org.apache.flink.api.connector.source.SplitsAssignment;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Lists the history files once (the list is part of every split, so file indices survive a
 * restore), makes one split per partition and gives partition p to reader p mod parallelism.
 */
final class ReplayEnumerator implements SplitEnumerator<ReplaySplit, ReplayEnumState> {
    private static final Logger LOG = LoggerFactory.getLogger(ReplayEnumerator.class);

    private final SplitEnumeratorContext<ReplaySplit> context;
    private final ReplayOptions opts;
    private final List<ReplaySplit> pending;
    private boolean initialized;

    ReplayEnumerator(SplitEnumeratorContext<ReplaySplit> context, ReplayOptions opts, ReplayEnumState state) {
        this.context = context;
        this.opts = opts;
        this.pending = new ArrayList<>(state.pending);
        this.initialized = state.initialized;
    }

    @Override
    public void start() {
        if (initialized) {
            return;
        }
        List<HistoryFile> files;
        try {
            files = List.copyOf(FileLister.list(opts.root, opts.layout));
        } catch (IOException e) {
            throw new IllegalStateException("hdfs-replay: cannot list " + opts.root + " / " + opts.layout + ": " + e, e);
        }
        LOG.info("hdfs-replay: {} file(s) under {} matching {}", files.size(), opts.root, opts.layout);
        for (int p = 0; p < opts.partitions; p++) {
            pending.add(ReplaySplit.fresh(p, files));
        }
        initialized = true;
    }

    @Override
    public void handleSplitRequest(int subtaskId, String requesterHostname) {}

    @Override
    public void addSplitsBack(List<ReplaySplit> splits, int subtaskId) {
        pending.addAll(splits);
        if (context.registeredReaders().containsKey(subtaskId)) {
            assign(subtaskId);
        }
    }

    @Override
    public void addReader(int subtaskId) {
        assign(subtaskId);
    }

    private void assign(int subtaskId) {
        int readers = context.currentParallelism();
        List<ReplaySplit> mine = new ArrayList<>();
        Iterator<ReplaySplit> it = pending.iterator();
        while (it.hasNext()) {
            ReplaySplit split = it.next();
            if (split.partition % readers == subtaskId) {
                mine.add(split);
                it.remove();
            }
        }
        if (!mine.isEmpty()) { // all at once: the reader starts one pass for all its splits
            context.assignSplits(new SplitsAssignment<>(Map.of(subtaskId, mine)));
        }
        context.signalNoMoreSplits(subtaskId);
    }

    @Override
    public ReplayEnumState snapshotState(long checkpointId) {
        return new ReplayEnumState(initialized, new ArrayList<>(pending));
    }

    @Override
    public void close() {}
}
