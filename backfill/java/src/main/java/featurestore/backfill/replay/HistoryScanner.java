package featurestore.backfill.replay;

import java.io.Closeable;
import java.io.IOException;

/** Reads one history file front to back: per row, the values of {@link RowDecoder#needed()}, in that order. */
interface HistoryScanner extends Closeable {
    boolean hasNext() throws IOException;

    /** The next row's needed values (the array is reused between calls). */
    Object[] next() throws IOException;

    /** The index in the file of the row last returned by next(). */
    long row();

    static HistoryScanner open(ReplayOptions.Format format, String path, RowDecoder decoder) throws IOException {
        return switch (format) {
            case AVRO -> new AvroFileScanner(path, decoder);
            case PARQUET -> new ParquetFileScanner(path, decoder.needed());
        };
    }
}
