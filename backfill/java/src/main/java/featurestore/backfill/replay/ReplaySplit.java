package featurestore.backfill.replay;

import java.util.List;
import org.apache.flink.api.connector.source.SourceSplit;

/**
 * One partition of the replay, with its checkpointed position.
 *
 * <p>The rows of the partition are emitted in (event time, file index, row) order, so what has
 * been emitted is exactly the rows whose key is at most the frontier {@code (frontierTs,
 * frontierFile, frontierRow)}. Every row not yet emitted lies in a file with index at least
 * {@code restartFile}. A restored split re-reads from {@code restartFile} and skips rows at or
 * below the frontier: nothing lost, nothing twice. {@code files} is the file list fixed when the
 * job first started, so file indices mean the same after a restore.
 */
public final class ReplaySplit implements SourceSplit {
    public static final long NO_TS = Long.MIN_VALUE;

    public final int partition;
    public final int restartFile;
    public final long frontierTs;
    public final int frontierFile;
    public final long frontierRow;
    public final List<HistoryFile> files;

    public ReplaySplit(int partition, int restartFile, long frontierTs, int frontierFile, long frontierRow,
            List<HistoryFile> files) {
        this.partition = partition;
        this.restartFile = restartFile;
        this.frontierTs = frontierTs;
        this.frontierFile = frontierFile;
        this.frontierRow = frontierRow;
        this.files = files;
    }

    public static ReplaySplit fresh(int partition, List<HistoryFile> files) {
        return new ReplaySplit(partition, 0, NO_TS, -1, -1L, files);
    }

    public static String idOf(int partition) {
        return "partition-" + partition;
    }

    @Override
    public String splitId() {
        return idOf(partition);
    }

    @Override
    public String toString() {
        return splitId() + "{restartFile=" + restartFile + ", frontier=(" + frontierTs + ", " + frontierFile + ", "
                + frontierRow + "), files=" + files.size() + "}";
    }
}
