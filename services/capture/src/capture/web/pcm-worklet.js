// AudioWorklet: the input mixed to mono, cut into PCM16 frames of `chunkMs`, each posted to the
// page with its level. Runs on the audio thread; `sampleRate` is the AudioContext's.

class PcmCapture extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const chunkMs = options.processorOptions?.chunkMs ?? 100;
    this.frameSize = Math.max(128, Math.round((sampleRate * chunkMs) / 1000));
    this.reset();
  }

  reset() {
    this.frame = new Int16Array(this.frameSize);
    this.filled = 0;
    this.sumSquares = 0;
    this.peak = 0;
  }

  process(inputs) {
    const channels = inputs[0];
    if (!channels || channels.length === 0) return true;
    const count = channels[0].length;
    for (let i = 0; i < count; i++) {
      let value = 0;
      for (const channel of channels) value += channel[i];
      value = Math.max(-1, Math.min(1, value / channels.length));
      this.sumSquares += value * value;
      this.peak = Math.max(this.peak, Math.abs(value));
      this.frame[this.filled++] = value < 0 ? value * 0x8000 : value * 0x7fff;
      if (this.filled === this.frameSize) this.flush();
    }
    return true;
  }

  flush() {
    const rms = Math.sqrt(this.sumSquares / this.filled);
    const pcm = this.frame.buffer;
    this.port.postMessage({ pcm, rms, peak: this.peak }, [pcm]);
    this.reset();
  }
}

registerProcessor("pcm-capture", PcmCapture);
