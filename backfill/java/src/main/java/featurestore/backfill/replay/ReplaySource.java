package featurestore.backfill.replay;

import java.util.List;
import org.apache.flink.api.connector.source.Boundedness;
import org.apache.flink.api.connector.source.Source;
import org.apache.flink.api.connector.source.SourceReader;
import org.apache.flink.api.connector.source.SourceReaderContext;
import org.apache.flink.api.connector.source.SplitEnumerator;
import org.apache.flink.api.connector.source.SplitEnumeratorContext;
import org.apache.flink.core.io.SimpleVersionedSerializer;
import org.apache.flink.table.data.RowData;

/** The FLIP-27 source: bounded, one split per partition. */
public final class ReplaySource implements Source<RowData, ReplaySplit, ReplayEnumState> {
    private static final long serialVersionUID = 1L;

    private final ReplayOptions opts;

    ReplaySource(ReplayOptions opts) {
        this.opts = opts;
    }

    @Override
    public Boundedness getBoundedness() {
        return Boundedness.BOUNDED;
    }

    @Override
    public SourceReader<RowData, ReplaySplit> createReader(SourceReaderContext context) {
        return new ReplaySourceReader(opts, context);
    }

    @Override
    public SplitEnumerator<ReplaySplit, ReplayEnumState> createEnumerator(
            SplitEnumeratorContext<ReplaySplit> context) {
        return new ReplayEnumerator(context, opts, new ReplayEnumState(false, List.of()));
    }

    @Override
    public SplitEnumerator<ReplaySplit, ReplayEnumState> restoreEnumerator(
            SplitEnumeratorContext<ReplaySplit> context, ReplayEnumState checkpoint) {
        return new ReplayEnumerator(context, opts, checkpoint);
    }

    @Override
    public SimpleVersionedSerializer<ReplaySplit> getSplitSerializer() {
        return ReplaySplitSerializer.INSTANCE;
    }

    @Override
    public SimpleVersionedSerializer<ReplayEnumState> getEnumeratorCheckpointSerializer() {
        return new ReplayEnumState.Serializer();
    }
}
