// Audio sources for a live session: the microphone, and a tab or the system through
// getDisplayMedia. Each is an AudioWorklet producing PCM16 frames at the context's rate.

const WORKLET_URL = new URL("./pcm-worklet.js", import.meta.url);

export class AudioProblem extends Error {
  constructor(code, message) {
    super(message);
    this.code = code;
  }
}

export async function openMicrophone() {
  if (!navigator.mediaDevices?.getUserMedia) {
    throw new AudioProblem(
      "insecure",
      "This browser offers no microphone here: open the page over https or on localhost.",
    );
  }
  try {
    return await navigator.mediaDevices.getUserMedia({
      audio: { echoCancellation: false, noiseSuppression: false, autoGainControl: false },
    });
  } catch (error) {
    throw mediaProblem(error, "microphone");
  }
}

export async function openDisplayAudio() {
  if (!navigator.mediaDevices?.getDisplayMedia) {
    throw new AudioProblem("unsupported", "This browser cannot capture a tab or the system audio.");
  }
  let stream;
  try {
    stream = await navigator.mediaDevices.getDisplayMedia({ video: true, audio: true });
  } catch (error) {
    throw mediaProblem(error, "tab or system audio");
  }
  if (stream.getAudioTracks().length === 0) {
    stream.getTracks().forEach((track) => track.stop());
    throw new AudioProblem(
      "no_audio",
      "The shared tab or screen has no audio: tick “Share audio” when choosing it.",
    );
  }
  return stream;
}

function mediaProblem(error, what) {
  const name = error?.name ?? "";
  if (name === "NotAllowedError" || name === "SecurityError") {
    return new AudioProblem(
      "refused",
      `Access to the ${what} was refused. Allow it in the browser's site settings, then press Start again.`,
    );
  }
  if (name === "NotFoundError" || name === "OverconstrainedError") {
    return new AudioProblem("not_found", `No ${what} was found on this device.`);
  }
  if (name === "NotReadableError") {
    return new AudioProblem("busy", `The ${what} is in use by another program.`);
  }
  return new AudioProblem("failed", `Could not open the ${what}: ${error?.message ?? error}`);
}

let moduleLoaded = null;

async function loadWorklet(context) {
  if (!moduleLoaded) moduleLoaded = context.audioWorklet.addModule(WORKLET_URL);
  await moduleLoaded;
}

// One stream feeding the worklet; `onFrame(ArrayBuffer)` gets PCM16, `onLevel(rms, peak)` levels.
export class AudioCapture {
  static async start(context, stream, { chunkMs = 100, onFrame, onLevel, onEnded }) {
    await loadWorklet(context);
    const capture = new AudioCapture(context, stream);
    capture.node = new AudioWorkletNode(context, "pcm-capture", {
      numberOfInputs: 1,
      numberOfOutputs: 1,
      processorOptions: { chunkMs },
    });
    capture.node.port.onmessage = ({ data }) => {
      onLevel?.(data.rms, data.peak);
      onFrame(data.pcm);
    };
    capture.source = context.createMediaStreamSource(stream);
    capture.mute = context.createGain();
    capture.mute.gain.value = 0; // keeps the graph pulling without playing the input back
    capture.source.connect(capture.node).connect(capture.mute).connect(context.destination);
    for (const track of stream.getAudioTracks()) {
      track.addEventListener("ended", () => onEnded?.());
    }
    return capture;
  }

  constructor(context, stream) {
    this.context = context;
    this.stream = stream;
  }

  get sampleRate() {
    return this.context.sampleRate;
  }

  stop() {
    this.node.port.onmessage = null;
    this.source.disconnect();
    this.node.disconnect();
    this.mute.disconnect();
    this.stream.getTracks().forEach((track) => track.stop());
  }
}
