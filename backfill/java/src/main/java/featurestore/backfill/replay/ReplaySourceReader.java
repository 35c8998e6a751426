package featurestore.backfill.replay;

import java.util.Map;
import org.apache.flink.api.connector.source.SourceOutput;
import org.apache.flink.api.connector.source.SourceReaderContext;
import org.apache.flink.configuration.Configuration;
import org.apache.flink.connector.base.source.reader.RecordEmitter;
import org.apache.flink.connector.base.source.reader.SingleThreadMultiplexSourceReaderBase;
import org.apache.flink.metrics.Counter;
import org.apache.flink.table.data.RowData;

/**
 * One fetcher thread runs the merge for all splits of this reader; records go out through each
 * split's own {@link SourceOutput}, so watermarks are generated per split (per partition).
 */
final class ReplaySourceReader
        extends SingleThreadMultiplexSourceReaderBase<ReplayRecord, RowData, ReplaySplit, ReplaySplitState> {

    ReplaySourceReader(ReplayOptions opts, SourceReaderContext context) {
        this(opts, context, context.metricGroup().counter("replayLateRows"));
    }

    private ReplaySourceReader(ReplayOptions opts, SourceReaderContext context, Counter late) {
        super(() -> new ReplaySplitReader(opts, late, context.currentParallelism()), new Emitter(),
                context.getConfiguration(), context);
    }

    @Override
    public void start() {
        // Splits are assigned by the enumerator when this reader registers; nothing to request.
    }

    @Override
    protected void onSplitFinished(Map<String, ReplaySplitState> finished) {}

    @Override
    protected ReplaySplitState initializedState(ReplaySplit split) {
        return new ReplaySplitState(split);
    }

    @Override
    protected ReplaySplit toSplitType(String splitId, ReplaySplitState state) {
        return state.toSplit();
    }

    /** Emits a row with its event time as the timestamp and moves the split's checkpointed position. */
    static final class Emitter implements RecordEmitter<ReplayRecord, RowData, ReplaySplitState> {
        @Override
        public void emitRecord(ReplayRecord record, SourceOutput<RowData> output, ReplaySplitState state) {
            if (record.isMarker()) {
                state.restartFile = record.restartFile;
                return;
            }
            output.collect(record.row, record.ts);
            state.frontierTs = record.ts;
            state.frontierFile = record.file;
            state.frontierRow = record.rowInFile;
        }
    }
}
