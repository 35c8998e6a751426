package featurestore.backfill.replay;

import java.io.IOException;
import java.util.ArrayList;
import java.util.List;
import org.apache.flink.core.io.SimpleVersionedSerializer;
import org.apache.flink.core.memory.DataInputDeserializer;
import org.apache.flink.core.memory.DataInputView;
import org.apache.flink.core.memory.DataOutputSerializer;
import org.apache.flink.core.memory.DataOutputView;

/** Version 1: partition, restart file, frontier (ts, file, row), then the file list. */
public final class ReplaySplitSerializer implements SimpleVersionedSerializer<ReplaySplit> {
    static final ReplaySplitSerializer INSTANCE = new ReplaySplitSerializer();
    private static final int VERSION = 1;

    @Override
    public int getVersion() {
        return VERSION;
    }

    @Override
    public byte[] serialize(ReplaySplit split) throws IOException {
        DataOutputSerializer out = new DataOutputSerializer(64 + split.files.size() * 96);
        write(split, out);
        return out.getCopyOfBuffer();
    }

    @Override
    public ReplaySplit deserialize(int version, byte[] bytes) throws IOException {
        if (version != VERSION) {
            throw new IOException("unknown hdfs-replay split version " + version);
        }
        return read(new DataInputDeserializer(bytes));
    }

    static void write(ReplaySplit split, DataOutputView out) throws IOException {
        out.writeInt(split.partition);
        out.writeInt(split.restartFile);
        out.writeLong(split.frontierTs);
        out.writeInt(split.frontierFile);
        out.writeLong(split.frontierRow);
        out.writeInt(split.files.size());
        for (HistoryFile f : split.files) {
            out.writeUTF(f.path);
            out.writeLong(f.landingStartMs);
        }
    }

    static ReplaySplit read(DataInputView in) throws IOException {
        int partition = in.readInt();
        int restartFile = in.readInt();
        long frontierTs = in.readLong();
        int frontierFile = in.readInt();
        long frontierRow = in.readLong();
        int n = in.readInt();
        List<HistoryFile> files = new ArrayList<>(n);
        for (int i = 0; i < n; i++) {
            files.add(new HistoryFile(in.readUTF(), in.readLong()));
        }
        return new ReplaySplit(partition, restartFile, frontierTs, frontierFile, frontierRow, files);
    }
}
