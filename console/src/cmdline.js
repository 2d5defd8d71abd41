// A command line split into words, as the CLI splits `--command-line` (cli/src/cmdline.rs): the
// create form's Command and Connect's custom command both read a line this way.

/**
 * Splits a command line into words as cli/src/cmdline.rs does (a POSIX shell's word splitting, no
 * expansion): blanks separate words; '…' is literal; "…" keeps all but \" \\ \$ \` which lose their
 * backslash; outside quotes \c is c and backslash-newline joins lines.
 */
export function splitCommand(line) {
  const words = [];
  let word = '';
  let inWord = false;
  const chars = [...line];
  let i = 0;
  const next = () => (i < chars.length ? chars[i++] : undefined);
  for (let c = next(); c !== undefined; c = next()) {
    if (/\s/.test(c)) {
      if (inWord) { words.push(word); word = ''; inWord = false; }
    } else if (c === '\\') {
      const d = next();
      if (d === undefined) throw new Error('the command line ends with a lone backslash');
      if (d !== '\n') { word += d; inWord = true; }
    } else if (c === "'") {
      inWord = true;
      for (;;) {
        const d = next();
        if (d === undefined) throw new Error("unterminated ' quote in the command line");
        if (d === "'") break;
        word += d;
      }
    } else if (c === '"') {
      inWord = true;
      for (;;) {
        const d = next();
        if (d === undefined) throw new Error('unterminated " quote in the command line');
        if (d === '"') break;
        if (d === '\\') {
          const e = next();
          if (e === undefined) throw new Error('unterminated " quote in the command line');
          if ('"\\$`'.includes(e)) word += e;
          else if (e !== '\n') word += '\\' + e;
        } else {
          word += d;
        }
      }
    } else {
      word += c;
      inWord = true;
    }
  }
  if (inWord) words.push(word);
  return words;
}
