package featurestore.backfill.replay;

import java.io.IOException;
import java.util.ArrayList;
import java.util.List;
import org.apache.flink.core.io.SimpleVersionedSerializer;
import org.apache.flink.core.memory.DataInputDeserializer;
import org.apache.flink.core.memory.DataOutputSerializer;

/** The enumerator's checkpoint: whether the file list was taken, and the splits not assigned yet. */
public final class ReplayEnumState {
    final boolean initialized;
    final List<ReplaySplit> pending;

    ReplayEnumState(boolean initialized, List<ReplaySplit> pending) {
        this.initialized = initialized;
        this.pending = pending;
    }

    /** Version 1: initialized flag, then the pending splits. */
    public static final class Serializer implements SimpleVersionedSerializer<ReplayEnumState> {
        private static final int VERSION = 1;

        @Override
        public int getVersion() {
            return VERSION;
        }

        @Override
        public byte[] serialize(ReplayEnumState state) throws IOException {
            DataOutputSerializer out = new DataOutputSerializer(256);
            out.writeBoolean(state.initialized);
            out.writeInt(state.pending.size());
            for (ReplaySplit split : state.pending) {
                ReplaySplitSerializer.write(split, out);
            }
            return out.getCopyOfBuffer();
        }

        @Override
        public ReplayEnumState deserialize(int version, byte[] bytes) throws IOException {
            if (version != VERSION) {
                throw new IOException("unknown hdfs-replay enumerator state version " + version);
            }
            DataInputDeserializer in = new DataInputDeserializer(bytes);
            boolean initialized = in.readBoolean();
            int n = in.readInt();
            List<ReplaySplit> pending = new ArrayList<>(n);
            for (int i = 0; i < n; i++) {
                pending.add(ReplaySplitSerializer.read(in));
            }
            return new ReplayEnumState(initialized, pending);
        }
    }
}
