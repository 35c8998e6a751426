package featurestore.backfill.replay;

/** The mutable position of a split while its records are emitted (updated by the emitter). */
final class ReplaySplitState {
    final ReplaySplit initial;
    int restartFile;
    long frontierTs;
    int frontierFile;
    long frontierRow;

    ReplaySplitState(ReplaySplit split) {
        this.initial = split;
        this.restartFile = split.restartFile;
        this.frontierTs = split.frontierTs;
        this.frontierFile = split.frontierFile;
        this.frontierRow = split.frontierRow;
    }

    ReplaySplit toSplit() {
        return new ReplaySplit(initial.partition, restartFile, frontierTs, frontierFile, frontierRow, initial.files);
    }
}
