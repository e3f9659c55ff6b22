// Panel 7's chat: a conversation with the loaded model through its chat template, answers streamed piece
// by piece with tokens/s, a stop button, the sampling settings, and (when an adapter is on) the base and
// the adapted model answering the same message side by side, one after the other. Each column keeps its
// own conversation, so each model sees what it said itself. "8-bit activations" decodes as llama.cpp does
// (generate's `activations: 'int8'`).
import { $, el, int, say } from '../ui.js';
import { numberFields, showRefusal } from '../fields.js';

const SAMPLING = { temperature: 0, topK: 0, topP: 1, seed: 0, maxNewTokens: 64 };

/**
 * `llm` is the raw window.lab.llm (generate, stop); `state()` → { loaded, active, busy } says what may run.
 * → { send(text) → the answers, clear(), sync() }.
 */
export function chatView(root, llm, state) {
  const form = $('#llm-chat-form', root);
  const message = $('#llm-message', root);
  const system = $('#llm-system', root);
  const send = $('#llm-send', root);
  const stop = $('#llm-stop', root);
  const compare = $('#llm-compare', root);
  const int8 = $('#llm-int8', root);
  const msg = $('#llm-chat-msg', root);
  const logs = { base: $('#llm-chat-base', root), adapted: $('#llm-chat-adapted', root) };
  const adapterName = $('#llm-chat-adapter', root);
  const fields = numberFields(form, SAMPLING);
  const history = { base: [], adapted: [] };
  let talking = false;

  function sync() {
    const s = state();
    send.disabled = !s.loaded || talking || Boolean(s.busy);
    stop.disabled = !talking;
    adapterName.textContent = s.active ? `“${s.active}”` : '(none on)';
  }

  const bubble = (log, role, text) => {
    const body = el('div', { className: 'text' }, text);
    const item = el('li', { className: `turn ${role}` }, el('span', { className: 'who' }, role === 'user' ? 'you' : 'model'), body);
    log.append(item);
    return { item, body };
  };

  /** One model's answer to the conversation so far, streamed into its column. */
  async function answer(which, text, sampling) {
    const log = logs[which];
    const turns = history[which];
    turns.push({ role: 'user', content: text });
    bubble(log, 'user', text);
    const { item, body } = bubble(log, 'assistant', '…');
    item.dataset.state = 'streaming';
    const messages = [...(system.value.trim() ? [{ role: 'system', content: system.value.trim() }] : []), ...turns];
    let shown = '';
    try {
      const out = await llm.generate({
        messages, ...sampling, adapted: which === 'adapted',
        onToken: (piece) => {
          shown += piece;
          body.textContent = shown;
        },
      });
      body.textContent = out.text;
      turns.push({ role: 'assistant', content: out.text });
      item.dataset.state = out.finish;
      item.append(el('span', { className: 'meta' }, `${int(out.ids.length)} tokens · ${out.tokensPerSec.toFixed(1)} tokens/s`
        + `${sampling.activations === 'int8' ? ' · 8-bit activations' : ''}`
        + `${out.finish === 'stopped' ? ' · stopped' : out.finish === 'length' ? ' · max new tokens reached' : ''}`));
      return out;
    } catch (e) {
      item.dataset.state = 'error';
      body.textContent = `(no answer: ${e.message})`;
      turns.pop();
      throw e;
    }
  }

  async function sendMessage(text = message.value) {
    const s = state();
    if (!s.loaded) throw new Error('load a model first');
    if (s.busy) throw new Error(`busy (${s.busy}); wait, or cancel it first`);
    if (talking) throw new Error('an answer is still being written; stop it first');
    if (!text.trim()) throw new Error('write a message first');
    const sampling = { ...fields.read(), activations: int8.checked ? 'int8' : 'f32' };
    talking = true;
    sync();
    say(msg, '');
    try {
      const both = compare.checked && s.active;
      const out = { base: await answer('base', text.trim(), sampling) };
      if (both) out.adapted = await answer('adapted', text.trim(), sampling);
      message.value = '';
      return out;
    } finally {
      talking = false;
      sync();
    }
  }

  form.addEventListener('submit', (e) => {
    e.preventDefault();
    sendMessage().catch((err) => showRefusal(msg, 'Cannot answer: ', err));
  });
  message.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      if (!send.disabled) form.requestSubmit();
    }
  });
  stop.addEventListener('click', () => llm.stop());
  $('#llm-clear', root).addEventListener('click', () => {
    history.base.length = 0;
    history.adapted.length = 0;
    logs.base.replaceChildren();
    logs.adapted.replaceChildren();
  });

  sync();
  return { send: sendMessage, sync, isTalking: () => talking };
}
