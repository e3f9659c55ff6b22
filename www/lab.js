// window.lab: the page's automation interface. Every method returns a promise and goes through the same
// code as the buttons, so the page shows what a script did exactly as if a person had clicked.
import { Request } from './protocol.js';

const bytesOf = (b) => (b instanceof Uint8Array ? b : new Uint8Array(b));

export function createLab(app, panels) {
  const control = async (type) => {
    const value = await app.request(type);
    if (value && (value.state === 'paused' || value.state === 'running')) app.setTrainingState(value.state);
    return value;
  };
  return {
    get info() {
      return app.info;
    },
    /** The live WorkerClient (replaced on restart). */
    get client() {
      return app.client;
    },
    /** Resolves to { model, adapters } once the models stored in this browser are loaded (or not). */
    restored: Promise.resolve({ model: false, adapters: 0 }),

    trainBase: (opts = {}) => panels.base.train(opts),
    trainAdapter: (opts = {}) => panels.adapter.train(opts),
    evaluate: () => app.evaluate(),
    classify: (pixels) => app.request(Request.CLASSIFY, { pixels: Array.from(pixels) }),
    classifyCanvas: () => panels.draw.classifyCanvas(),
    svd: (rows, rank) => panels.svd.compute(rows, rank),
    exportModel: () => app.request(Request.EXPORT_MODEL),
    exportAdapter: (name) => app.request(Request.EXPORT_ADAPTER, { name }),
    importModel: (bytes) => panels.base.importModel(bytesOf(bytes), 'the model'),
    importAdapter: ({ safetensors, config, name }) =>
      panels.adapter.importAdapter({ safetensors: bytesOf(safetensors), config, name }),
    adapters: () => app.refreshAdapters(),
    setAdapter: (name) => panels.adapter.act(Request.SET_ADAPTER, { name: name ?? null }, name ? `"${name}" is on` : 'Adapter off'),
    merge: (name) => panels.adapter.act(Request.MERGE, { name }, `"${name}" merged into W`),
    unmerge: (name) => panels.adapter.act(Request.UNMERGE, { name }, `"${name}" unmerged`),
    deleteAdapter: async (name) => {
      const value = await panels.adapter.act(Request.DELETE_ADAPTER, { name }, `Adapter "${name}" deleted`);
      await app.forgetAdapter(name);
      return value;
    },
    sweep: (opts = {}) => panels.sweep.run(opts),
    pause: () => control(Request.PAUSE),
    resume: () => control(Request.RESUME),
    cancel: () => control(Request.CANCEL),
    status: () => app.request(Request.STATUS),
    /** What the banner's Restart button does: a fresh worker, with the stored models loaded again. */
    restart: () => app.restart(),
  };
}
